// Helper module that builds the official etcd binaries (etcd, etcdctl, etcdutl) from their Go
// modules. Each of go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3 has its main package at the module
// root, but their go.mod replace the other etcd modules with ../api, ../client/... (the etcd
// repository's layout), which `go install pkg@version` refuses. Requiring them here builds them
// with the published modules of the same release, which is what those replace lines point at;
// go.sum was filled by `go list -mod=mod -deps` of the three commands.
module kbin.test/upstream/etcd

go 1.26.0

require (
	go.etcd.io/etcd/etcdctl/v3 v3.6.17
	go.etcd.io/etcd/etcdutl/v3 v3.6.17
	go.etcd.io/etcd/server/v3 v3.6.17
)
