//! The web UI: server-rendered pages and their static files.

/// The UI's routes, each with its access policy; `api::routes` appends them to the API's.
pub fn routes() -> Vec<crate::api::Route> {
    Vec::new()
}
