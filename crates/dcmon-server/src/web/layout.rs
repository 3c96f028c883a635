//! The frame of every signed-in page: head (CSRF token, stylesheet), one navigation list,
//! the user's name and role, a logout button, and the page's own module script.

use super::assets;
use crate::auth::Role;
use maud::{DOCTYPE, Markup, html};

/// Who is looking at a page: what the layout shows and which controls pages offer.
pub struct PageUser<'a> {
    pub name: &'a str,
    pub role: Role,
    /// The session's CSRF token for the page's JS writes (none for bearer-token callers,
    /// which need none).
    pub csrf: &'a str,
}

impl PageUser<'_> {
    /// Whether the user may use controls that need `role`.
    pub fn may(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// One entry of the navigation.
struct NavItem {
    href: &'static str,
    label: &'static str,
    /// Lowest role that sees the entry (the page's own access).
    min: Role,
}

/// The whole navigation, in order. One list: a new page is one more entry here with its
/// role.
const NAV: &[NavItem] = &[
    NavItem {
        href: "/",
        label: "Fleet",
        min: Role::Viewer,
    },
    NavItem {
        href: "/alerts",
        label: "Alerts",
        min: Role::Viewer,
    },
    NavItem {
        href: "/agents",
        label: "Agents",
        min: Role::Viewer,
    },
    NavItem {
        href: "/bmcs",
        label: "BMCs",
        min: Role::Viewer,
    },
    NavItem {
        href: "/users",
        label: "Users",
        min: Role::Admin,
    },
    NavItem {
        href: "/tokens",
        label: "Tokens",
        min: Role::Viewer,
    },
    NavItem {
        href: "/audit",
        label: "Audit",
        min: Role::Admin,
    },
    NavItem {
        href: "/settings",
        label: "Settings",
        min: Role::Viewer,
    },
];

/// `<head>` content shared by every page, the login page included.
pub(super) fn head(title: &str, csrf: Option<&str>, charts: bool) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="dark";
        // No icon file: an empty one spares every page a 404.
        link rel="icon" href="data:,";
        @if let Some(token) = csrf {
            meta name="csrf-token" content=(token);
        }
        title { (title) " · dcmon" }
        @if charts {
            link rel="stylesheet" href=(assets::url("vendor/uplot/uPlot.min.css"));
        }
        link rel="stylesheet" href=(assets::url("app.css"));
        @if charts {
            script src=(assets::url("vendor/uplot/uPlot.iife.min.js")) {}
        }
    }
}

/// A signed-in page. `active` is the navigation entry to mark (its `href`); `main` is the
/// page's `<main id="main">` element; `script` its module under `js/`.
pub(super) fn page(
    user: &PageUser<'_>,
    active: &str,
    title: &str,
    script: &str,
    charts: bool,
    main: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, Some(user.csrf), charts)) }
            body data-role=(user.role.as_str()) {
                a.skip-link href="#main" { "Skip to content" }
                div.shell {
                    nav.sidebar aria-label="Main" {
                        div.brand { "dcmon" }
                        ul.nav {
                            @for item in NAV.iter().filter(|i| user.may(i.min)) {
                                li {
                                    a href=(item.href) aria-current=[(item.href == active).then_some("page")] {
                                        (item.label)
                                    }
                                }
                            }
                        }
                        div.whoami {
                            span.name title="Signed in as" { (user.name) }
                            span { span.badge { (user.role.as_str()) } }
                            button #logout type="button" { "Log out" }
                        }
                    }
                    (main)
                }
                script type="module" src=(assets::url(script)) {}
            }
        }
    }
}
