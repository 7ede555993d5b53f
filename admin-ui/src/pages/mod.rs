//! The dashboard's pages.

pub mod apps;
pub mod audit;
pub mod channels;
pub mod disputes;
pub mod overview;
pub mod signin;
