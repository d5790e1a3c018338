//! etcd: the JSON API client and the operations behind `kbin etcd`.

pub mod api;
pub mod ops;
