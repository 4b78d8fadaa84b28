#!/bin/bash
# The hook an operator would otherwise write by hand, for comparison in the
# benchmark: the same kernel work as vxvirt for one point-to-point network
# (bridge + vxlan, MTU 1450, enslaved, up; deleted on release), with plain
# `ip` commands. It counts no users, checks nothing and cannot recover.
case "$2" in
  prepare)
    ip link add vxbr42 mtu 1450 type bridge
    ip link add vxlan42 mtu 1450 type vxlan id 42 dstport 4789 local 192.168.8.100 remote 192.168.8.101 dev ens47f1
    ip link set vxlan42 master vxbr42
    ip link set vxlan42 up
    ip link set vxbr42 up
    ;;
  release)
    ip link del vxlan42
    ip link del vxbr42
    ;;
esac
exit 0
