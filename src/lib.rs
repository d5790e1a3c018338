//! kbin: build and run highly-available Kubernetes clusters from the official release binaries.
//!
//! The library holds all the logic; the `kbin` binary is a thin clap layer over it.
//! - [`config`]: the cluster file, parsed and validated into a [`config::Cluster`].
//! - [`host`]: the hosts over SSH (transport, host keys, sudo, bastion, atomic file pushes, checks).
//! - [`artifacts`]: the release binaries: catalog, lock, verified downloads, cache, bundles.
//! - [`pki`]: kbin's own certificate authority, driven by the cert table in `pki-profiles/`.
//! - [`render`]: every file kbin writes on a host, from the templates in `unit-templates/`.
//! - [`kube`]: the Kubernetes API through the SSH connection to a master, and the manifests kbin
//!   applies (`manifests/`).

// A failed host is reported with everything known about it (`engine::HostFailure`: its phase,
// error, journal lines and rollback state): a large error on a cold path, on purpose.
#![allow(clippy::result_large_err)]

pub mod artifacts;
pub mod config;
pub mod error;
pub mod exit;
pub mod deploy;
pub mod engine;
pub mod etcd;
pub mod fsutil;
pub mod host;
pub mod kube;
pub mod output;
pub mod pki;
pub mod render;
pub mod tls;

pub use error::{Error, Exit, Result};
