# Berth's own image: the web app, the worker and the SSH gateway (compose.yaml runs one
# per service). Built from a Debian base that install.sh pulls, or makes with mmdebstrap
# where no registry is reachable.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# Extra CAs of the host (a TLS-inspecting proxy), copied by install.sh; often empty.
COPY .build/ca/ /usr/local/share/ca-certificates/
# postgresql-client-15: pg_dump/pg_restore of the same major as the postgres service;
# git: workspaces from repositories; iptables: the worker's rule that keeps workspaces
# off the control plane's ports.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
        postgresql-client-15 git iptables \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Berth runs from its source folder, as in the embedded mode (the templates in
# devcontainers/ and the Caddyfiles sit beside the package).
WORKDIR /opt/berth/src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# The dependencies first, in a layer of their own: an upgrade that changes only Berth's
# code (most do) reuses it and installs Berth alone, in seconds instead of minutes.
COPY pyproject.toml app/appliance/constraints.txt ./
RUN python3 -m venv /opt/berth/venv \
    && python3 -c "import tomllib; print(chr(10).join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/berth/venv/bin/pip install --no-cache-dir -c constraints.txt -r requirements.txt
COPY README.md ./
COPY app/ app/
COPY devcontainers/ devcontainers/
COPY caddy/ caddy/
RUN /opt/berth/venv/bin/pip install --no-cache-dir --no-deps -e . \
    && /opt/berth/venv/bin/berth --version
ENV PATH=/opt/berth/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
CMD ["berth", "--help"]
