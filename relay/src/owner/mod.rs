//! The tunnel owner's pages.

pub mod status_page;
