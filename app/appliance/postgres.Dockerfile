# PostgreSQL 15 from Debian, for the appliance's database.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

COPY .build/ca/ /usr/local/share/ca-certificates/
# No default cluster: the entrypoint makes one in the data volume on first start.
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-15 \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY app/appliance/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/15/bin:$PATH
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
