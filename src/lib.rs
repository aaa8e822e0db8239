//! earthly-webhook: a Kubernetes admission webhook that makes Earthly CI run correctly and safely.
//!
//! Data flows one way: bytes -> [`review`] -> ([`detect`] -> [`mutate`] | [`validate`]) ->
//! response -> bytes. The decision modules know nothing of HTTP, the CLI or the kube client.

pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod image;
pub mod logbuf;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod server;
pub mod validate;
