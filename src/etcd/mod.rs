//! etcd's JSON API client (the operations behind `kbin etcd` are `crate::deploy::etcd`).

pub mod api;
