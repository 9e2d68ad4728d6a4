//! pam_zt (work in progress)
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
pub mod account;
pub mod args;
pub mod audit;
pub mod auth;
pub mod directory;
pub mod handler;
pub mod home;
pub mod status;
pub mod token;
