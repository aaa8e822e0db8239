//! earthly-webhook: a Kubernetes admission webhook that makes Earthly CI run correctly and safely.
//!
//! Data flows one way: bytes -> [`review`] (the wire) -> [`envelope`] (one typed decode) ->
//! [`rules`] (the registry and one module per resource family, which use [`detect`], [`mutate`]
//! and the [`cluster`] lookups) -> verdict -> bytes. The decision modules know nothing of HTTP,
//! the CLI or the kube client.

pub mod audit;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod envelope;
pub mod family;
pub mod image;
pub mod logbuf;
pub mod metrics;
pub mod mutate;
pub mod policies;
pub mod policy;
pub mod review;
pub mod rule_id;
pub mod rules;
pub mod server;
