//! The web UI: server-rendered page shells (maud templates in [`pages`] inside the one
//! [`layout`]) and the embedded static files ([`assets`]: CSS, JS modules, vendored
//! uPlot). Pages carry no data; their scripts fetch it from the JSON APIs with the
//! session cookie and send the page's CSRF token on every write.

mod assets;
mod layout;
pub mod pages;

pub use assets::serve as static_file;
pub use layout::PageUser;

#[cfg(test)]
mod tests;
