//! Fakes shared by the connector tests.
#![allow(dead_code)]

pub mod fake_http;
pub mod graph;
