#!/bin/sh
# Start the appliance's Docker engine inside its container.
#
# The container runs with the privileged-equivalent flags in compose.yaml; what
# --privileged would also do, and those flags do not, is leave /proc/sys and the cgroup
# hierarchies writable. So: remount them read-write (cgroup v1: each controller; v2: the
# one tree, after moving this shell into a child group so the root can delegate).
set -eu

# dockerd sets forwarding and bridge sysctls of this (the engine's own) network namespace.
mount -o remount,rw /proc/sys 2>/dev/null || mount -o remount,rw,bind /proc/sys /proc/sys || true

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    mkdir -p /sys/fs/cgroup/init
    # Processes in the root of a delegated tree would block enabling controllers.
    while read -r pid; do echo "$pid" > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true; done \
        < /sys/fs/cgroup/cgroup.procs
    sed -e 's/ / +/g' -e 's/^/+/' /sys/fs/cgroup/cgroup.controllers \
        > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
else
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    for hierarchy in /sys/fs/cgroup/*/; do
        mount -o remount,rw,bind "$hierarchy" "$hierarchy" 2>/dev/null || true
    done
fi

mkdir -p /run/engine
rm -f /run/engine/docker.sock /var/run/docker.pid
# The socket lives on a volume shared with Berth's services only; the docker CLI in this
# container (healthcheck, install.sh) uses it too.
exec dockerd \
    --host unix:///run/engine/docker.sock \
    --data-root /var/lib/docker \
    --storage-driver overlay2 \
    --log-level warn \
    "$@"
