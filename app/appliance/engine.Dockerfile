# The appliance's own Docker engine (Docker-in-Docker): it runs every workspace, keeps
# them off the host's engine, and is reachable only through a socket on a volume that
# only Berth's services mount.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

COPY .build/ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates docker.io iptables \
        procps \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY app/appliance/engine-entrypoint.sh /usr/local/bin/engine-entrypoint
# The docker CLI here (healthcheck, install.sh) talks to this engine's socket.
ENV DOCKER_HOST=unix:///run/engine/docker.sock
VOLUME /var/lib/docker
ENTRYPOINT ["/usr/local/bin/engine-entrypoint"]
