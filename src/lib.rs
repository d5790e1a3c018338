//! kbin: build and run highly-available Kubernetes clusters from the official release binaries.
//!
//! The library holds all the logic; the `kbin` binary is a thin clap layer over it.
//! - [`config`]: the cluster file, parsed and validated into a [`config::Cluster`].
//! - [`artifacts`]: the release binaries: catalog, lock, verified downloads, cache, bundles.
//! - [`pki`]: kbin's own certificate authority, driven by the cert table in `pki-profiles/`.

pub mod artifacts;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod output;
pub mod pki;

pub use error::{Error, Exit, Result};
