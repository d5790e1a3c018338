#!/usr/bin/env bash
# The "binary way" tutorials' etcd install, as a script: cfssl makes the CA and one server cert
# (all member IPs in its SANs), then for each host in turn: scp binaries, certs, an env-file
# config and a unit; ssh to reload and start. Then poll etcdctl endpoint health. For comparison
# with `kbin etcd deploy` in bench/etcd.sh.
# usage: etcd-handwritten.sh EXTRACTED_DIR SSH_CONFIG WORKDIR
set -euo pipefail
bins=$(ls -d "$1"/*/ | head -1) cfg=$2 w=$3
hosts=(10.213.0.11 10.213.0.12 10.213.0.13) names=(h1 h2 h3)
rm -rf "$w" && mkdir -p "$w" && cd "$w"
echo '{"CN":"etcd CA","key":{"algo":"ecdsa","size":256}}' >ca-csr.json
cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca
echo '{"signing":{"default":{"expiry":"87600h"},"profiles":{"www":{"expiry":"87600h","usages":["signing","key encipherment","server auth","client auth"]}}}}' >ca-config.json
echo '{"CN":"etcd","hosts":["10.213.0.11","10.213.0.12","10.213.0.13","127.0.0.1"],"key":{"algo":"ecdsa","size":256}}' >server-csr.json
cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=ca-config.json -profile=www server-csr.json 2>/dev/null | cfssljson -bare server
cluster="h1=https://10.213.0.11:2380,h2=https://10.213.0.12:2380,h3=https://10.213.0.13:2380"
for i in 0 1 2; do
  ip=${hosts[$i]} name=${names[$i]}
  cat >etcd.conf <<CONF
ETCD_NAME="$name"
ETCD_DATA_DIR="/var/lib/etcd/default.etcd"
ETCD_LISTEN_PEER_URLS="https://$ip:2380"
ETCD_LISTEN_CLIENT_URLS="https://$ip:2379,https://127.0.0.1:2379"
ETCD_INITIAL_ADVERTISE_PEER_URLS="https://$ip:2380"
ETCD_ADVERTISE_CLIENT_URLS="https://$ip:2379"
ETCD_INITIAL_CLUSTER="$cluster"
ETCD_INITIAL_CLUSTER_TOKEN="etcd-cluster"
ETCD_INITIAL_CLUSTER_STATE="new"
CONF
  cat >etcd.service <<UNIT
[Unit]
Description=Etcd Server
After=network.target
[Service]
Type=notify
EnvironmentFile=/opt/etcd/cfg/etcd.conf
ExecStart=/opt/etcd/bin/etcd --cert-file=/opt/etcd/ssl/server.pem --key-file=/opt/etcd/ssl/server-key.pem --peer-cert-file=/opt/etcd/ssl/server.pem --peer-key-file=/opt/etcd/ssl/server-key.pem --trusted-ca-file=/opt/etcd/ssl/ca.pem --peer-trusted-ca-file=/opt/etcd/ssl/ca.pem --client-cert-auth --peer-client-cert-auth
Restart=on-failure
LimitNOFILE=65536
[Install]
WantedBy=multi-user.target
UNIT
  ssh -F "$cfg" "root@$ip" mkdir -p /opt/etcd/bin /opt/etcd/cfg /opt/etcd/ssl
  scp -q -F "$cfg" "$bins/etcd" "$bins/etcdctl" "root@$ip:/opt/etcd/bin/"
  scp -q -F "$cfg" ca.pem server.pem server-key.pem "root@$ip:/opt/etcd/ssl/"
  scp -q -F "$cfg" etcd.conf "root@$ip:/opt/etcd/cfg/"
  scp -q -F "$cfg" etcd.service "root@$ip:/usr/lib/systemd/system/"
  ssh -F "$cfg" "root@$ip" 'systemctl daemon-reload && systemctl enable etcd && systemctl start --no-block etcd'
done
until ssh -F "$cfg" root@10.213.0.11 "ETCDCTL_API=3 /opt/etcd/bin/etcdctl --cacert=/opt/etcd/ssl/ca.pem --cert=/opt/etcd/ssl/server.pem --key=/opt/etcd/ssl/server-key.pem --endpoints=https://10.213.0.11:2379,https://10.213.0.12:2379,https://10.213.0.13:2379 endpoint health" >/dev/null 2>&1; do sleep 0.2; done
