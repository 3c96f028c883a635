//! The Alerts pages: alerts (firing, pending, resolved history, acknowledge, silence),
//! rules, notification channels with the outbox, and silences. Shells like the other
//! pages; their scripts read `/api/alerts`, `/api/rules`, `/api/channels`,
//! `/api/notifications` and `/api/silences`. Write controls are rendered for operators
//! and admins only (the API refuses viewers anyway).

use super::layout::{PageUser, page};
use crate::auth::Role;
use maud::{Markup, html};

/// The sub-navigation between the four pages; `current` is the page's own path.
fn subnav(current: &str) -> Markup {
    const PAGES: &[(&str, &str)] = &[
        ("/alerts", "Alerts"),
        ("/alerts/rules", "Rules"),
        ("/alerts/channels", "Channels"),
        ("/alerts/silences", "Silences"),
    ];
    html! {
        nav.subnav aria-label="Alerts pages" {
            @for (href, label) in PAGES {
                a href=(href) aria-current=[(*href == current).then_some("page")] { (label) }
            }
        }
    }
}

/// A form field's message slot: the page's script puts the server's words for that
/// field here.
fn field_error(name: &str) -> Markup {
    html! { span.field-error data-error-for=(name) aria-live="polite" {} }
}

/// The silence form, on `/alerts` (filled from an alert's labels) and `/alerts/silences`.
fn silence_form(hidden: bool) -> Markup {
    html! {
        section.panel #silence-panel hidden[hidden] {
            h2 { "Silence alerts" }
            p.dim { "Alerts whose labels match every matcher are not notified until the silence ends. One matcher a line: "
                code { "name=value" } ", " code { "name!=value" } ", " code { "name=~regex" } " or " code { "name!~regex" } "." }
            form #silence-form .form-row aria-label="Create a silence" {
                label.grow { "Matchers"
                    textarea name="matchers" rows="3" required autocomplete="off" autocapitalize="none" spellcheck="false" {}
                    (field_error("matchers"))
                }
                label { "Duration"
                    input name="duration" required value="2h" size="8" autocomplete="off" placeholder="2h";
                    (field_error("duration"))
                }
                label.grow { "Comment"
                    input name="comment" autocomplete="off" placeholder="Why, and who is on it";
                }
                button.primary type="submit" { "Create silence" }
                @if hidden { button #silence-cancel type="button" { "Cancel" } }
            }
            div #silence-form-error aria-live="polite" {}
        }
    }
}

/// `/alerts`: firing and pending alerts first, then the resolved history. `/alerts/{id}`
/// (where notifications link) is the same page with that alert's history open.
pub fn alerts(user: &PageUser<'_>, open: Option<i64>) -> Markup {
    let write = user.may(Role::Operator);
    let main = html! {
        main #main .main data-can-write=(write) data-open-alert=[open] {
            div.toolbar {
                h1 { "Alerts" }
                span #alerts-count .dim {}
                div.spacer {}
                label.inline { "State"
                    select #alerts-state aria-label="Show alerts in state" {
                        option value="" { "all" }
                        option value="firing" { "firing" }
                        option value="pending" { "pending" }
                        option value="resolved" { "resolved" }
                    }
                }
                input #alerts-filter type="search" placeholder="Filter by rule, label or summary" aria-label="Filter alerts";
                span #alerts-updated .dim aria-live="off" {}
            }
            (subnav("/alerts"))
            @if write { (silence_form(true)) }
            section #open-section {
                h2.section-title { "Firing and pending" }
                section.panel {
                    div.table-scroll {
                        table.list #open-table {
                            thead { tr {
                                th { "Severity" } th { "State" } th { "Rule" } th { "Host" } th { "Labels" }
                                th.num { "Value" } th { "Since" } th { "Summary" } th { "Acked by" } th { "Silenced" }
                                th { "Actions" }
                            } }
                            tbody #open-body {}
                        }
                    }
                }
            }
            section #resolved-section {
                div.toolbar {
                    h2.section-title { "Resolved" }
                    div.spacer {}
                    label.inline { "Since"
                        select #resolved-since aria-label="Resolved alerts of the last" {
                            option value="86400000" { "24 hours" }
                            option value="604800000" { "7 days" }
                            option value="2592000000" { "30 days" }
                        }
                    }
                }
                section.panel {
                    div.table-scroll {
                        table.list #resolved-table {
                            thead { tr {
                                th { "Severity" } th { "Rule" } th { "Host" } th { "Labels" } th.num { "Value" }
                                th { "Fired" } th { "Resolved" } th { "Summary" } th { "Acked by" } th { "Actions" }
                            } }
                            tbody #resolved-body {}
                        }
                    }
                    p { button #resolved-more type="button" hidden { "Older alerts" } }
                }
            }
        }
    };
    page(user, "/alerts", "Alerts", "js/alerts.js", false, main)
}

/// `/alerts/rules`: stored and built-in rules with their state now; adding, removing and
/// importing for operators.
pub fn rules(user: &PageUser<'_>) -> Markup {
    let write = user.may(Role::Operator);
    let main = html! {
        main #main .main data-can-write=(write) {
            div.toolbar {
                h1 { "Alert rules" }
                span #rules-count .dim {}
                div.spacer {}
                input #rules-filter type="search" placeholder="Filter by name or expression" aria-label="Filter rules";
            }
            (subnav("/alerts/rules"))
            section.panel {
                div.table-scroll {
                    table.list #rules-table {
                        thead { tr {
                            th { "Name" } th { "Kind" } th { "State" } th { "Expression" } th { "Threshold" }
                            th { "For" } th { "Severity" } th { "Channels" } th { "Updated" }
                            @if write { th { "Actions" } }
                        } }
                        tbody #rules-body {}
                    }
                }
            }
            @if write {
                section.panel {
                    h2 { "Add a rule" }
                    p.dim { "A PromQL expression evaluated on every cycle; each series it returns above (or below) the threshold is an alert. The resolve threshold keeps a flapping value from resolving and firing again." }
                    form #rule-form .form-row aria-label="Add a rule" {
                        label { "Name" input name="name" required autocomplete="off" autocapitalize="none" spellcheck="false" placeholder="GpuHot"; (field_error("name")) }
                        label.grow { "Expression (PromQL)" input name="expr" required autocomplete="off" autocapitalize="none" spellcheck="false" placeholder="dcmon_gpu_temperature_celsius"; (field_error("expr")) }
                        label { "Fires when"
                            select name="op" {
                                option value="" { "(any series)" }
                                option value=">" selected { ">" }
                                option value=">=" { ">=" }
                                option value="<" { "<" }
                                option value="<=" { "<=" }
                            }
                        }
                        label { "Threshold" input name="value" type="number" step="any" value="90"; (field_error("threshold")) }
                        label { "Resolves past" input name="resolve" type="number" step="any" placeholder="(threshold)"; (field_error("resolve")) }
                        label { "For" input name="for" value="5m" size="6" autocomplete="off"; (field_error("for")) }
                        label { "Severity"
                            select name="severity" {
                                option value="info" { "info" }
                                option value="warning" selected { "warning" }
                                option value="critical" { "critical" }
                            }
                        }
                        label { "Channels (comma separated; none: routes decide)" input name="channels" autocomplete="off" autocapitalize="none" spellcheck="false"; (field_error("channels")) }
                        label.grow { "Summary" input name="summary" autocomplete="off" placeholder="{{ $labels.host }} at {{ $value }}"; (field_error("annotations")) }
                        button.primary type="submit" { "Add rule" }
                    }
                    div #rule-form-error aria-live="polite" {}
                }
                section.panel {
                    h2 { "Import Prometheus rules" }
                    p.dim { "A Prometheus alerting-rule file (" code { "groups: - name: ... rules: - alert: ..." } "); all its rules are added or replaced, or none when any is refused." }
                    form #import-form .stack.wide aria-label="Import Prometheus rules" {
                        label { "Rule file (YAML)"
                            textarea name="yaml" rows="10" required spellcheck="false" autocapitalize="none" {}
                            (field_error("yaml"))
                        }
                        div { button.primary type="submit" { "Import" } }
                    }
                    div #import-result aria-live="polite" {}
                }
            }
        }
    };
    page(user, "/alerts", "Alert rules", "js/rules.js", false, main)
}

/// `/alerts/channels`: notification channels (settings only: the API returns no
/// secret) and the outbox.
pub fn channels(user: &PageUser<'_>) -> Markup {
    let write = user.may(Role::Operator);
    let text = |name: &str, label: &str, placeholder: &str| {
        html! {
            label { (label) input name=(name) autocomplete="off" autocapitalize="none" spellcheck="false" placeholder=(placeholder); (field_error(name)) }
        }
    };
    let main = html! {
        main #main .main data-can-write=(write) {
            div.toolbar {
                h1 { "Notification channels" }
                span #channels-count .dim {}
            }
            (subnav("/alerts/channels"))
            section.panel {
                div.table-scroll {
                    table.list #channels-table {
                        thead { tr {
                            th { "Name" } th { "Type" } th { "Sends to" } th { "Routing" } th { "Resolved" }
                            th { "Created" } th { "By" }
                            @if write { th { "Actions" } }
                        } }
                        tbody #channels-body {}
                    }
                }
            }
            @if write {
                section.panel {
                    h2 { "Add a channel" }
                    p.dim { "URLs, tokens and passwords are stored encrypted and never shown again." }
                    form #channel-form .form-row aria-label="Add a channel" {
                        label { "Type"
                            select name="type" {
                                @for t in ["webhook", "slack", "discord", "teams", "telegram", "email"] { option value=(t) { (t) } }
                            }
                        }
                        label { "Name" input name="name" required autocomplete="off" autocapitalize="none" spellcheck="false"; (field_error("name")) }
                        span data-for="webhook slack discord teams" {
                            label.grow { "Webhook URL" input name="url" type="url" autocomplete="off" spellcheck="false" placeholder="https://hooks.example.com/..."; (field_error("url")) }
                        }
                        span data-for="telegram" { label { "Bot token" input name="token" type="password" autocomplete="off"; (field_error("token")) } }
                        span data-for="telegram" { (text("chat_id", "Chat id", "-1001234567890")) }
                        span data-for="email" { (text("smtp_host", "SMTP host", "smtp.example.com")) }
                        span data-for="email" { label { "Port" input name="smtp_port" type="number" min="1" max="65535" placeholder="587"; (field_error("smtp_port")) } }
                        span data-for="email" {
                            label { "TLS"
                                select name="smtp_tls" {
                                    option value="starttls" { "STARTTLS (587)" }
                                    option value="tls" { "implicit TLS (465)" }
                                    option value="none" { "none (localhost relay)" }
                                }
                            }
                        }
                        span data-for="email" { (text("smtp_user", "User", "")) }
                        span data-for="email" { label { "Password" input name="password" type="password" autocomplete="new-password"; (field_error("password")) } }
                        span data-for="email" { (text("from", "From", "dcmon@example.com")) }
                        span data-for="email" { (text("to", "To (comma separated)", "oncall@example.com")) }
                        (text("severities", "Only severities (comma separated; none: all)", "critical"))
                        (text("matchers", "Only alerts matching (comma separated)", "host=~\"rack1-.*\""))
                        label.inline { input name="send_resolved" type="checkbox" checked; "send resolved" }
                        button.primary type="submit" { "Add channel" }
                    }
                    div #channel-form-error aria-live="polite" {}
                }
            }
            div.toolbar {
                h2.section-title { "Recent notifications" }
                div.spacer {}
                label.inline { "Status"
                    select #notifications-status aria-label="Notifications with status" {
                        option value="" { "any" }
                        option value="queued" { "queued" }
                        option value="sent" { "sent" }
                        option value="failed" { "failed" }
                    }
                }
            }
            section.panel {
                div.table-scroll {
                    table.list #notifications-table {
                        thead { tr {
                            th { "Created" } th { "Channel" } th { "Status" } th { "Message" } th.num { "Attempts" }
                            th { "Sent / next try" } th { "Last error" }
                        } }
                        tbody #notifications-body {}
                    }
                }
            }
        }
    };
    page(
        user,
        "/alerts",
        "Notification channels",
        "js/channels.js",
        false,
        main,
    )
}

/// `/alerts/silences`: silences in force (or all), expiring and adding for operators.
pub fn silences(user: &PageUser<'_>) -> Markup {
    let write = user.may(Role::Operator);
    let main = html! {
        main #main .main data-can-write=(write) {
            div.toolbar {
                h1 { "Silences" }
                span #silences-count .dim {}
                div.spacer {}
                label.inline { input #silences-all type="checkbox"; "show ended" }
            }
            (subnav("/alerts/silences"))
            section.panel {
                div.table-scroll {
                    table.list #silences-table {
                        thead { tr {
                            th { "ID" } th { "Matchers" } th { "Author" } th { "Comment" } th { "Starts" } th { "Ends" }
                            @if write { th { "Actions" } }
                        } }
                        tbody #silences-body {}
                    }
                }
            }
            @if write { (silence_form(false)) }
        }
    };
    page(user, "/alerts", "Silences", "js/silences.js", false, main)
}
