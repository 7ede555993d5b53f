//! The dashboard's pages.

pub mod apps;
pub mod overview;
pub mod signin;
