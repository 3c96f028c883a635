//! The pages. Each is a shell: the layout, the page's controls and empty containers that
//! its module script fills from the JSON APIs. Controls a role may not use are not
//! rendered for it (the API refuses them anyway).

use super::layout::{PageUser, head, page};
use crate::auth::Role;
use maud::{DOCTYPE, Markup, html};

const RANGES: &[&str] = &["1h", "6h", "24h", "7d"];

/// `/login`: user and password, then the TOTP step when the server asks for it.
pub fn login() -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head("Sign in", None, false)) }
            body {
                main #main .login-page {
                    div.login-card {
                        div.brand { "dcmon" }
                        h1 { "Sign in" }
                        div #login-message aria-live="polite" {}
                        form #login-form .stack {
                            div #password-step .stack {
                                label { "User"
                                    input name="user" autocomplete="username" required autocapitalize="none" spellcheck="false";
                                }
                                label { "Password"
                                    input name="password" type="password" autocomplete="current-password" required;
                                }
                            }
                            div #totp-step .stack hidden {
                                label { span #totp-label { "Authentication code" }
                                    input name="totp" inputmode="numeric" autocomplete="one-time-code" data-mode="totp";
                                }
                                button #use-recovery type="button" { "Use a recovery code" }
                            }
                            button.primary type="submit" { "Sign in" }
                        }
                    }
                }
                script type="module" src=(super::assets::url("js/login.js")) {}
            }
        }
    }
}

/// `/`: the fleet table with its header (totals, range, refresh).
pub fn fleet(user: &PageUser<'_>) -> Markup {
    let main = html! {
        main #main .main {
            div.toolbar {
                h1 { "Fleet" }
                div.stat { span.dim { "Machines" } span #fleet-total .v { "-" } }
                div.stat { span.dim { "Online" } span #fleet-online .v.green { "-" } }
                span #fleet-shown .dim {}
                div.spacer {}
                input #fleet-filter type="search" placeholder="Filter by machine or status" aria-label="Filter machines";
                label.inline { "Range"
                    select #fleet-range aria-label="Time range of machine charts" {
                        @for r in RANGES { option value=(r) { (r) } }
                    }
                }
                label.inline { "Refresh"
                    select #fleet-interval aria-label="Refresh interval" {
                        option value="live" { "live" }
                        option value="10" { "10 s" }
                        option value="30" { "30 s" }
                        option value="60" { "1 min" }
                        option value="off" { "off" }
                    }
                }
                button #fleet-refresh type="button" { "Refresh" }
                span #fleet-updated .dim {}
            }
            div #fleet .fleet {
                div.fleet-inner {
                    div.fleet-head {}
                    div.fleet-body tabindex="0" aria-label="Machines" {
                        div.fleet-spacer {}
                        div.fleet-empty { "No machines match." }
                    }
                }
            }
        }
    };
    page(user, "/", "Fleet", "js/fleet.js", false, main)
}

/// `/machines/{host}`: charts, agent, commands; the send form for operators.
pub fn machine(user: &PageUser<'_>, host: &str) -> Markup {
    let sections = [
        ("System", "charts-system"),
        ("Disks", "charts-disks"),
        ("Network", "charts-network"),
        ("GPUs", "charts-gpu"),
        ("Temperatures and fans", "charts-thermal"),
        ("NVMe health", "charts-nvme"),
        ("APT", "charts-apt"),
    ];
    let main = html! {
        main #main .main data-host=(host) {
            div.toolbar {
                h1 { (host) }
                a href="/" { "Fleet" }
                div.spacer {}
                div.range-picker role="group" aria-label="Time range" {
                    @for r in RANGES {
                        button type="button" data-range=(r) aria-pressed="false" { (r) }
                    }
                }
                span #range-label .dim {}
            }
            section.panel #agent-info aria-label="Agent" { span.dim { "Loading agent..." } }
            @for (title, id) in sections {
                h2.section-title { (title) }
                div.charts #(id) {}
            }
            h2.section-title { "Commands" }
            section.panel {
                @if user.may(Role::Operator) {
                    (command_form())
                }
                div.table-scroll {
                    table.list {
                        thead { tr { th { "ID" } th { "Command" } th { "Status" } th { "Sent" } th { "By" } th { "Result" } } }
                        tbody #commands-body {}
                    }
                }
            }
        }
    };
    page(user, "/", host, "js/machine.js", true, main)
}

fn command_form() -> Markup {
    html! {
        form #command-form .form-row aria-label="Send a command" {
            label { "Command"
                select name="kind" {
                    option value="collect_now" { "collect_now (collect and push now)" }
                    option value="reboot" { "reboot" }
                    option value="fan_control" { "fan_control" }
                    option value="config_update" { "config_update (interval)" }
                }
            }
            span data-for="reboot" {
                label { "Delay (s)" input name="delay_s" type="number" min="0" max="86400" value="0"; }
            }
            span data-for="reboot" {
                label.inline { input name="cancel" type="checkbox"; "cancel a scheduled reboot" }
            }
            span data-for="fan_control" {
                label { "Action"
                    select name="fan_action" {
                        option value="status" { "status" }
                        option value="mode" { "mode" }
                        option value="zone" { "zone" }
                    }
                }
            }
            span data-for="fan_control" {
                label { "Mode"
                    select name="fan_mode" {
                        option value="" { "(show)" }
                        @for m in ["standard", "full", "optimal", "heavy_io"] { option value=(m) { (m) } }
                    }
                }
            }
            span data-for="fan_control" {
                label { "Zone" input name="fan_zone" type="number" min="0" max="255" value="0"; }
            }
            span data-for="fan_control" {
                label { "Duty %" input name="fan_duty" type="number" min="0" max="100" placeholder="(show)"; }
            }
            span data-for="config_update" {
                label { "Interval (s)" input name="interval_s" type="number" min="1" value="30"; }
            }
            button.primary type="submit" { "Send" }
        }
    }
}

/// `/agents`: registered agents and enrollment.
pub fn agents(user: &PageUser<'_>, public_url: &str, fingerprint: &str) -> Markup {
    let write = user.may(Role::Operator);
    let main = html! {
        main #main .main data-can-write=(write) data-public-url=(public_url) data-fingerprint=(fingerprint) {
            div.toolbar {
                h1 { "Agents" }
                span #agents-count .dim {}
                div.spacer {}
                input #agents-filter type="search" placeholder="Filter" aria-label="Filter agents";
            }
            section.panel {
                div.table-scroll {
                    table.list {
                        thead { tr {
                            th { "Host" } th { "Status" } th { "Version" } th { "Last seen" }
                            th { "Address" } th { "Registered" }
                            @if write { th { "Actions" } }
                        } }
                        tbody #agents-body {}
                    }
                }
            }
            @if write {
                section.panel {
                    h2 { "Enroll new machines" }
                    form #enroll-form .form-row {
                        label { "Machines" input name="uses" type="number" min="1" max="10000" value="1"; }
                        label { "Valid for (hours)" input name="ttl_h" type="number" min="1" max="720" value="24"; }
                        button.primary type="submit" { "Create enrollment token" }
                    }
                    div #enroll-result {}
                }
            }
        }
    };
    page(user, "/agents", "Agents", "js/agents.js", false, main)
}

/// `/bmcs`: the BMC inventory with its poll state; adding and removing for admins, a
/// connectivity check for operators.
pub fn bmcs(user: &PageUser<'_>) -> Markup {
    let check = user.may(Role::Operator);
    let admin = user.may(Role::Admin);
    let main = html! {
        main #main .main data-can-check=(check) data-can-admin=(admin) {
            div.toolbar {
                h1 { "BMCs" }
                span #bmcs-count .dim {}
                div.spacer {}
                input #bmcs-filter type="search" placeholder="Filter by name, address, agent or state" aria-label="Filter BMCs";
                span #bmcs-updated .dim {}
            }
            section.panel {
                div.table-scroll {
                    table.list #bmcs-table {
                        thead { tr {
                            th { "Name" } th { "Address" } th { "Vendor" } th { "Agent" }
                            th { "State" } th.num { "Failures" } th { "Last poll" } th { "Fan mode" }
                            th { "Interval" }
                            @if check { th { "Actions" } }
                        } }
                        tbody #bmcs-body {}
                    }
                }
            }
            @if admin {
                section.panel {
                    h2 { "Add a BMC" }
                    p.dim { "Polled over IPMI 2.0 (RMCP+) from this server. The password is stored encrypted and never shown again." }
                    form #bmc-form .form-row aria-label="Add a BMC" {
                        label { "Name" input name="name" required autocomplete="off" autocapitalize="none" spellcheck="false"; }
                        label { "Address" input name="address" required autocomplete="off" autocapitalize="none" spellcheck="false" placeholder="10.0.0.5"; }
                        label { "Port" input name="port" type="number" min="1" max="65535" value="623"; }
                        label { "User" input name="user" required autocomplete="off" autocapitalize="none" spellcheck="false"; }
                        label { "Password" input name="password" type="password" required autocomplete="new-password"; }
                        label { "Interval (s)" input name="interval_s" type="number" min="10" max="86400" value="300"; }
                        button.primary type="submit" { "Add BMC" }
                    }
                    div #bmc-form-error aria-live="polite" {}
                }
            }
        }
    };
    page(user, "/bmcs", "BMCs", "js/bmcs.js", false, main)
}

/// `/bmcs/{name}`: the BMC's fans now (refreshed), charts of its fan speeds and
/// temperatures, and its fan curve: an editor for operators, read only for viewers.
pub fn bmc(user: &PageUser<'_>, name: &str) -> Markup {
    let write = user.may(Role::Operator);
    let main = html! {
        main #main .main data-bmc=(name) data-can-write=(write) {
            div.toolbar {
                h1 { (name) }
                a href="/bmcs" { "BMCs" }
                span #bmc-reach {}
                div.spacer {}
                span #fans-updated .dim aria-live="off" {}
            }
            section.panel #bmc-info aria-label="BMC" { span.dim { "Loading..." } }
            h2.section-title { "Fans now" }
            section.panel #fan-status aria-live="polite" { span.dim { "Asking the BMC..." } }
            h2.section-title { "Last hour" }
            div.toolbar {
                span #range-label .dim {}
                div.spacer {}
                button #charts-reset type="button" { "Last hour" }
            }
            div.charts #charts-bmc {}
            h2.section-title { "Fan curve" }
            section.panel #curve aria-label="Fan curve" {
                @if !write {
                    p.dim { "Read only: changing the curve needs the operator role." }
                }
                div #curve-body { span.dim { "Loading..." } }
            }
        }
    };
    page(user, "/bmcs", name, "js/bmc.js", true, main)
}

fn role_options(up_to: Role) -> Markup {
    html! {
        @for r in [Role::Viewer, Role::Operator, Role::Admin] {
            @if r <= up_to { option value=(r.as_str()) { (r.as_str()) } }
        }
    }
}

/// `/users` (admins).
pub fn users(user: &PageUser<'_>) -> Markup {
    let main = html! {
        main #main .main {
            h1 { "Users" }
            section.panel {
                h2 { "Add a user" }
                form #user-form .form-row {
                    label { "Name" input name="name" required autocomplete="off" autocapitalize="none"; }
                    label { "Role" select name="role" { (role_options(Role::Admin)) } }
                    label { "Password (12 or more characters)" input name="password" type="password" minlength="12" required autocomplete="new-password"; }
                    button.primary type="submit" { "Add user" }
                }
            }
            section.panel {
                div.table-scroll {
                    table.list {
                        thead { tr { th { "Name" } th { "Role" } th { "Two-factor" } th { "Locked" } th { "Created" } th { "Actions" } } }
                        tbody #users-body {}
                    }
                }
            }
        }
    };
    page(user, "/users", "Users", "js/users.js", false, main)
}

/// `/tokens`: API tokens for scripts and Grafana.
pub fn tokens(user: &PageUser<'_>) -> Markup {
    let main = html! {
        main #main .main {
            h1 { "API tokens" }
            section.panel {
                h2 { "Create a token" }
                p.dim { "For scripts and Grafana: send it as " code { "Authorization: Bearer <token>" } ". A token can have at most your own role." }
                form #token-form .form-row {
                    label { "Name" input name="name" required autocomplete="off"; }
                    label { "Role" select name="role" { (role_options(user.role)) } }
                    button.primary type="submit" { "Create token" }
                }
                div #token-result {}
            }
            section.panel {
                div.table-scroll {
                    table.list {
                        thead { tr { th { "Name" } th { "Role" } th { "Owner" } th { "Created" } th { "Last used" } th { "State" } th {} } }
                        tbody #tokens-body {}
                    }
                }
            }
        }
    };
    page(user, "/tokens", "API tokens", "js/tokens.js", false, main)
}

/// `/audit` (admins): search the audit log.
pub fn audit(user: &PageUser<'_>) -> Markup {
    let main = html! {
        main #main .main {
            h1 { "Audit log" }
            section.panel {
                form #audit-form .form-row role="search" {
                    label { "Actor" input name="actor" autocomplete="off"; }
                    label { "Action" input name="action" placeholder="e.g. login" autocomplete="off"; }
                    label { "Text" input name="q" type="search" autocomplete="off"; }
                    label { "Since" input name="since" type="datetime-local"; }
                    label { "Until" input name="until" type="datetime-local"; }
                    label { "Per page"
                        select name="limit" {
                            option value="20" { "20" }
                            option value="50" { "50" }
                            option value="100" selected { "100" }
                            option value="500" { "500" }
                        }
                    }
                    button.primary type="submit" { "Search" }
                }
            }
            section.panel {
                div.table-scroll {
                    table.list {
                        thead { tr { th { "Time" } th { "Actor" } th { "Action" } th { "Target" } th { "Detail" } th { "From" } } }
                        tbody #audit-body {}
                    }
                }
                p { button #audit-more type="button" hidden { "Older entries" } }
            }
        }
    };
    page(user, "/audit", "Audit log", "js/audit.js", false, main)
}

/// `/settings`: the user's password and two-factor; the server's settings (name, value),
/// read only.
pub fn settings(user: &PageUser<'_>, server_settings: &[(&str, String)]) -> Markup {
    let main = html! {
        main #main .main {
            h1 { "Settings" }
            section.panel {
                h2 { "Password" }
                form #password-form .stack {
                    // For password managers: which account the new password belongs to.
                    input name="username" autocomplete="username" value=(user.name) hidden;
                    label { "Current password" input name="current" type="password" required autocomplete="current-password"; }
                    label { "New password (12 or more characters)" input name="new" type="password" minlength="12" required autocomplete="new-password"; }
                    label { "New password again" input name="repeat" type="password" minlength="12" required autocomplete="new-password"; }
                    div { button.primary type="submit" { "Change password" } }
                }
            }
            section.panel {
                h2 { "Two-factor authentication" }
                div #totp { span.dim { "Loading..." } }
            }
            section.panel {
                h2 { "Server settings" }
                p.dim { "Read only: they are changed in the server's configuration file (reloaded on SIGHUP)." }
                dl.kv #server-settings {
                    @for (name, value) in server_settings {
                        dt { code { (name) } }
                        dd { (value) }
                    }
                }
            }
        }
    };
    page(user, "/settings", "Settings", "js/settings.js", false, main)
}

/// The answer to a page the user's role may not open: the same frame and navigation, so
/// the user can go where they may.
pub fn forbidden(user: &PageUser<'_>, message: &str) -> Markup {
    let main = html! {
        main #main .main {
            h1 { "Forbidden" }
            div.alert role="alert" { (message) }
            p { a href="/" { "Back to the fleet" } }
        }
    };
    page(user, "", "Forbidden", "js/api.js", false, main)
}

/// The 403 page for a caller without a usable identity: no navigation to offer.
pub fn forbidden_unnamed(message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head("Forbidden", None, false)) }
            body {
                main #main .login-page {
                    div.login-card {
                        div.brand { "dcmon" }
                        h1 { "Forbidden" }
                        div.alert role="alert" { (message) }
                        p { a href="/login" { "Sign in" } }
                    }
                }
            }
        }
    }
}
