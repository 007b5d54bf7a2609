#!/usr/bin/env bash
# Install, upgrade or remove Berth, the appliance, on this machine.
#
#   sudo ./install.sh [--domain berth.example.com --email ops@example.com]
#   sudo ./install.sh                 # again: upgrade in place, data kept
#   sudo ./install.sh --uninstall     # stop and remove the stack, keep data
#
# Run as root from a checkout on Debian 12 or Ubuntu 24.04. Everything it writes stays
# in this folder (.env with the secrets, .build/, backups/, berth-root-ca.crt) and in
# Docker (images berth/*, the compose project's volumes).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_FILE="$HERE/.env"
WORKSPACE_BASE=berth-base:bookworm # the image Berth's templates build on
WAIT_SECONDS=${BERTH_INSTALL_WAIT:-900}
SERVICES="engine postgres web worker ssh egress caddy"
STEP="starting"

usage() {
    cat <<'EOF'
Usage: install.sh [options]            install, or upgrade an existing installation
       install.sh --uninstall [--purge]

Where people reach Berth (default: this machine's first IP address, Caddy's own CA):
  --domain NAME       a DNS name for this machine; workspaces get NAME's subdomains
                      (point *.NAME here too); a public certificate through ACME
  --email ADDRESS     the ACME account's e-mail (needed for --tls acme)
  --ip ADDRESS        no domain: serve on this address (workspaces get paths)
  --tls acme|internal acme (default with --domain) or internal (Caddy's own CA)
Ports:
  --http-port N (80)  --https-port N (443)  --apps-port N (8443)  --ssh-port N (2222)
Other:
  --admin NAME        the first admin's account name (default admin)
  --project NAME      the compose project name (default berth)
  --tools-bundle FILE the browser IDE's tools bundle from `berth tools export` on another
                      Berth of this version, for a machine that cannot reach npm (else
                      the worker builds it after the install, about 3 minutes)
  --uninstall         stop and remove the containers; volumes, .env and backups stay
  --purge             with --uninstall: also delete the volumes (all workspaces and the
                      database), the images and .env; backups/ stays
EOF
}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf '\033[31merror:\033[0m %s\n' "$1" >&2
    [ $# -gt 1 ] && printf '  fix: %s\n' "$2" >&2
    exit 1
}
on_error() {
    local code=$?
    printf '\033[31merror:\033[0m install.sh stopped while %s (exit %s, line %s).\n' \
        "$STEP" "$code" "$1" >&2
    printf '  The output above says why. Fix it and run install.sh again: it picks up where\n' >&2
    printf '  it stopped and never deletes data.\n' >&2
    exit "$code"
}
trap 'on_error $LINENO' ERR

# --- arguments ----------------------------------------------------------------------
DOMAIN="" EMAIL="" IP="" TLS="" ADMIN="admin" PROJECT="" UNINSTALL=0 PURGE=0 TOOLS_BUNDLE=""
HTTP_PORT="" HTTPS_PORT="" APPS_PORT="" SSH_PORT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --domain) DOMAIN=${2:?--domain needs a name}; shift ;;
    --email) EMAIL=${2:?--email needs an address}; shift ;;
    --ip) IP=${2:?--ip needs an address}; shift ;;
    --tls) TLS=${2:?--tls needs acme or internal}; shift ;;
    --http-port) HTTP_PORT=${2:?}; shift ;;
    --https-port) HTTPS_PORT=${2:?}; shift ;;
    --apps-port) APPS_PORT=${2:?}; shift ;;
    --ssh-port) SSH_PORT=${2:?}; shift ;;
    --admin) ADMIN=${2:?}; shift ;;
    --project) PROJECT=${2:?}; shift ;;
    --tools-bundle) TOOLS_BUNDLE=${2:?--tools-bundle needs a file}; shift ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" "see the usage above" ;;
    esac
    shift
done
if [ -n "$TOOLS_BUNDLE" ]; then
    [ -f "$TOOLS_BUNDLE" ] && [ -r "$TOOLS_BUNDLE" ] || die "--tools-bundle: $TOOLS_BUNDLE is not a readable file" \
        "make it with 'berth tools export FILE' on a Berth of this version, then copy it here"
    TOOLS_BUNDLE=$(realpath -- "$TOOLS_BUNDLE")
    case "$TOOLS_BUNDLE" in
    *:*) die "--tools-bundle: the path $TOOLS_BUNDLE has a ':', which compose cannot mount" \
        "move or rename the file to a path without ':'" ;;
    esac
fi

# --- .env ---------------------------------------------------------------------------
env_get() { [ -f "$ENV_FILE" ] && sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1 || true; }
env_set() {
    touch "$ENV_FILE"
    chmod 600 "$ENV_FILE"
    if grep -q "^$1=" "$ENV_FILE"; then
        local escaped
        escaped=$(printf '%s' "$2" | sed 's/[&|\\]/\\&/g')
        sed -i "s|^$1=.*|$1=$escaped|" "$ENV_FILE"
    else
        printf '%s=%s\n' "$1" "$2" >>"$ENV_FILE"
    fi
}
random_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

compose() { "${COMPOSE[@]}" --project-directory "$HERE" -f "$HERE/compose.yaml" "$@"; }
container_of() { compose ps -q "$1" 2>/dev/null || true; }

# --- checks -------------------------------------------------------------------------
STEP="checking this machine"
[ "$(id -u)" -eq 0 ] || die "install.sh must run as root" "sudo $0 $*"
if [ -r /etc/os-release ]; then
    . /etc/os-release
    case "${ID:-}-${VERSION_ID:-}" in
    debian-12 | ubuntu-24.04) ;;
    *) note "warning: tested on Debian 12 and Ubuntu 24.04; this is ${PRETTY_NAME:-unknown}" ;;
    esac
fi
[ "$(uname -m)" = x86_64 ] || note "warning: tested on x86_64; this is $(uname -m)"

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
for pair in "http-port:$HTTP_PORT" "https-port:$HTTPS_PORT" "apps-port:$APPS_PORT" "ssh-port:$SSH_PORT"; do
    value=${pair#*:}
    [ -z "$value" ] || valid_port "$value" || die "--${pair%%:*} $value is not a port number (1-65535)"
done
if [ -n "$DOMAIN" ]; then
    [[ "$DOMAIN" =~ ^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$ ]] ||
        die "--domain $DOMAIN is not a DNS name" "give a name like berth.example.com"
    [ -z "$IP" ] || die "--domain and --ip exclude each other" "give one of them"
fi
[ -z "$IP" ] || [[ "$IP" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
    die "--ip $IP is not an IPv4 address" "give the address people reach this machine at"
case "$TLS" in "" | acme | internal) ;; *) die "--tls $TLS: choose acme or internal" ;; esac

# --- Docker and compose -------------------------------------------------------------
STEP="installing Docker"
apt_install() {
    note "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/tmp/berth-apt.log 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>/tmp/berth-apt.log 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>/tmp/berth-apt.log 2>&1
    } || die "could not install $* (log: /tmp/berth-apt.log)" \
        "check that this machine reaches its apt mirror (apt-get update)"
}
if ! command -v docker >/dev/null; then
    say "Installing Docker (Debian's docker.io)"
    apt_install docker.io
fi
if ! docker info >/dev/null 2>&1; then
    say "Starting the Docker engine"
    if [ -d /run/systemd/system ]; then
        systemctl enable --now docker
    else
        # No systemd (a container or a minimal VM): run dockerd in the background.
        nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer" \
        "see /var/log/dockerd.log or 'journalctl -u docker'"
fi
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    say "Installing Docker Compose"
    # Ubuntu packages compose v2 as a plugin; Debian 12 has compose 1.29.
    if apt-cache show docker-compose-v2 >/dev/null 2>&1; then
        apt_install docker-compose-v2
    else
        apt_install docker-compose
    fi
    if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
fi
export COMPOSE_PROJECT_NAME=${PROJECT:-$(env_get COMPOSE_PROJECT_NAME)}
COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-berth}
# Compose 1.x drops other characters silently, and the volume names derive from this one.
[[ $COMPOSE_PROJECT_NAME =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] || die \
    "--project $COMPOSE_PROJECT_NAME: use lowercase letters, digits, - and _ (at most 63)" \
    "for example: --project berth"

# --- uninstall ----------------------------------------------------------------------
if [ "$UNINSTALL" -eq 1 ]; then
    STEP="removing the stack"
    [ -f "$ENV_FILE" ] || die "no .env here: Berth is not installed from $HERE"
    if [ "$PURGE" -eq 1 ]; then
        say "Removing Berth ($COMPOSE_PROJECT_NAME) with its volumes, images and .env"
        compose down --volumes --rmi all --remove-orphans
        rm -f "$ENV_FILE" "$HERE/berth-root-ca.crt"
        rm -rf "$HERE/.build"
        note "kept: $HERE/backups (delete it yourself when you no longer need it)"
    else
        say "Stopping and removing Berth ($COMPOSE_PROJECT_NAME); volumes, .env and backups stay"
        compose down --remove-orphans
        note "workspaces and the database are still in the volumes; install.sh brings them back"
        note "to delete them too: $0 --uninstall --purge"
    fi
    exit 0
fi

# --- settings -----------------------------------------------------------------------
STEP="writing .env"
UPGRADE=0
[ -f "$ENV_FILE" ] && UPGRADE=1
if [ "$UPGRADE" -eq 1 ]; then say "Upgrading the installation in $HERE (settings in .env)"; else say "Writing .env"; fi
[ -n "$(env_get BERTH_SECRET_KEY)" ] || env_set BERTH_SECRET_KEY "$(random_hex)"
if [ -z "$(env_get POSTGRES_PASSWORD)" ]; then
    env_set POSTGRES_PASSWORD "$(random_hex)"
    if docker volume inspect "${COMPOSE_PROJECT_NAME}_postgres" >/dev/null 2>&1; then
        note "found the database of an earlier install (${COMPOSE_PROJECT_NAME}_postgres): it is kept and takes the new password in .env"
    fi
fi
[ -n "$(env_get BERTH_METRICS_TOKEN)" ] || env_set BERTH_METRICS_TOKEN "$(random_hex)"
env_set COMPOSE_PROJECT_NAME "$COMPOSE_PROJECT_NAME"
pick() { # pick NAME GIVEN DEFAULT: the option given, else what .env has, else the default
    local value=$2
    [ -n "$value" ] || value=$(env_get "$1")
    [ -n "$value" ] || value=$3
    env_set "$1" "$value"
    printf '%s' "$value"
}
HTTP_PORT=$(pick BERTH_HTTP_PORT "$HTTP_PORT" 80)
HTTPS_PORT=$(pick BERTH_HTTPS_PORT "$HTTPS_PORT" 443)
APPS_PORT=$(pick BERTH_APPS_PORT "$APPS_PORT" 8443)
SSH_PORT=$(pick BERTH_SSH_PORT "$SSH_PORT" 2222)
[ -n "$DOMAIN$IP" ] || DOMAIN=$(env_get BERTH_DOMAIN)
[ -n "$DOMAIN$IP" ] || IP=$(env_get BERTH_IP)
if [ -z "$DOMAIN$IP" ]; then
    IP=$(hostname -I 2>/dev/null | awk '{print $1}')
    [ -n "$IP" ] || die "cannot tell this machine's address" "give --domain NAME or --ip ADDRESS"
fi
if [ -n "$DOMAIN" ]; then
    HOST=$DOMAIN
    TLS=${TLS:-$(env_get BERTH_TLS)}
    # Caddy's own CA for names no public CA will certify.
    case "$DOMAIN" in localhost | *.localhost | *.local | *.internal | *.lan) TLS=${TLS:-internal} ;; esac
    TLS=${TLS:-acme}
    env_set BERTH_DOMAIN "$DOMAIN"
    env_set BERTH_IP ""
    env_set BERTH_APPS_DOMAIN "$DOMAIN"
    env_set BERTH_APPS_SITE "*.$DOMAIN:$APPS_PORT"
else
    HOST=$IP
    TLS=internal # public CAs do not certify private addresses
    env_set BERTH_DOMAIN ""
    env_set BERTH_IP "$IP"
    env_set BERTH_APPS_DOMAIN none
    env_set BERTH_APPS_SITE "$IP:$APPS_PORT"
fi
EMAIL=${EMAIL:-$(env_get BERTH_ACME_EMAIL)}
if [ "$TLS" = acme ] && [ -z "$EMAIL" ]; then
    die "a public certificate (ACME) needs an e-mail address for the CA account" \
        "add --email you@example.com, or --tls internal for Caddy's own CA"
fi
env_set BERTH_TLS "$TLS"
if [ -n "$DOMAIN" ]; then env_set BERTH_APPS_TLS "$TLS"; else env_set BERTH_APPS_TLS internal-ip; fi
env_set BERTH_ACME_EMAIL "$EMAIL"
env_set BERTH_SITE "$HOST"
env_set BERTH_SSH_HOST "$HOST"
PUBLIC_URL="https://$HOST"
[ "$HTTPS_PORT" = 443 ] || PUBLIC_URL="$PUBLIC_URL:$HTTPS_PORT"
env_set BERTH_PUBLIC_URL "$PUBLIC_URL"
note "Berth at $PUBLIC_URL, workspaces on port $APPS_PORT, SSH on port $SSH_PORT, TLS: $TLS"

RUNNING=$(compose ps -q 2>/dev/null || true)
if [ -z "$RUNNING" ]; then
    STEP="checking the ports"
    for port in "$HTTP_PORT" "$HTTPS_PORT" "$APPS_PORT" "$SSH_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is already in use on this machine" \
                "stop what listens there, or choose another with --http-port/--https-port/--apps-port/--ssh-port"
        fi
    done
fi

# --- base image ---------------------------------------------------------------------
STEP="getting a Debian base image"
BASE=$(env_get BERTH_BASE_IMAGE)
if [ -n "$BASE" ] && docker image inspect "$BASE" >/dev/null 2>&1; then
    note "base image: $BASE"
elif docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    BASE=debian:bookworm-slim
elif docker image inspect "$WORKSPACE_BASE" >/dev/null 2>&1; then
    BASE=$WORKSPACE_BASE
else
    say "Getting the Debian base image"
    if timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
        BASE=debian:bookworm-slim
    else
        # No registry: build the same Debian from this machine's apt mirror.
        note "no container registry reachable: building Debian bookworm with mmdebstrap (~1 min)"
        command -v mmdebstrap >/dev/null || apt_install mmdebstrap
        work=$(mktemp -d)
        mmdebstrap --variant=minbase --quiet bookworm "$work/rootfs.tar" ||
            die "mmdebstrap failed" "check that this machine reaches its Debian mirror"
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' "$work/rootfs.tar" "$WORKSPACE_BASE" >/dev/null
        rm -rf "$work"
        BASE=$WORKSPACE_BASE
    fi
fi
env_set BERTH_BASE_IMAGE "$BASE"
export BERTH_BASE_IMAGE=$BASE

# Extra CAs this machine trusts (a TLS-inspecting proxy) go into the images, so pip,
# npm and apt inside them trust what the host trusts.
mkdir -p "$HERE/.build/ca" "$HERE/backups"
rm -f "$HERE"/.build/ca/*.crt
find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$HERE/.build/ca/" \; 2>/dev/null || true

# --- upgrade: a database backup first ----------------------------------------------
health_of() {
    local id
    id=$(container_of "$1")
    [ -n "$id" ] || { echo missing; return; }
    docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id"
}
restarts_of() {
    local id
    id=$(container_of "$1")
    [ -n "$id" ] || { echo 0; return; }
    docker inspect -f '{{.RestartCount}}' "$id" 2>/dev/null || echo 0
}
if [ "$UPGRADE" -eq 1 ] && [ -n "$(container_of web)" ]; then
    STEP="backing up the database before the upgrade"
    if [ "$(health_of web)" = healthy ]; then
        say "Backing up the database before upgrading"
        compose exec -T web berth backup now || die "the backup before the upgrade failed" \
            "see the message above; fix it, or stop Berth (install.sh --uninstall) and re-run"
    else
        note "the web service is not healthy: no backup before this upgrade (older ones are in backups/)"
    fi
fi

# --- images and start ---------------------------------------------------------------
STEP="building the images"
say "Building the images (berth, engine, postgres, caddy) from $BASE"
note "log: $HERE/.build/build.log"
if ! compose build >"$HERE/.build/build.log" 2>&1; then
    tail -n 25 "$HERE/.build/build.log" >&2
    die "building the images failed (the end of the log is above)" \
        "check that this machine reaches Debian's mirror and PyPI, then run install.sh again"
fi

wait_healthy() {
    STEP="waiting for $*"
    local deadline=$((SECONDS + WAIT_SECONDS)) next_up=$((SECONDS + 30)) service state pending
    while :; do
        pending="" missing=0
        for service in "$@"; do
            state=$(health_of "$service")
            [ "$state" = healthy ] || pending="$pending $service($state)"
            case "$state" in missing | created | exited) missing=1 ;; esac
        done
        [ -z "$pending" ] && return 0
        for service in "$@"; do
            # A service that keeps exiting (a bad setting, say) will not get healthy by
            # waiting: show why now instead of after the whole wait. Docker doubles the
            # pause between restarts, so 8 is about a minute of failing, longer than a
            # dependency takes to come back during an upgrade.
            [ "$(restarts_of "$service")" -ge 8 ] || continue
            printf '\n--- last log lines of %s ---\n' "$service" >&2
            compose logs --no-color --tail 30 "$service" >&2 || true
            die "$service keeps exiting (restarted $(restarts_of "$service") times)" \
                "read its log above (${COMPOSE[*]} logs $service); fix the cause, then run install.sh again"
        done
        if [ "$missing" -eq 1 ] && [ $SECONDS -ge $next_up ]; then
            compose up -d >/dev/null 2>&1 || true
            next_up=$((SECONDS + 30))
        fi
        if [ $SECONDS -ge $deadline ]; then
            for service in "$@"; do
                [ "$(health_of "$service")" = healthy ] && continue
                printf '\n--- last log lines of %s ---\n' "$service" >&2
                compose logs --no-color --tail 30 "$service" >&2 || true
            done
            die "not healthy after ${WAIT_SECONDS}s:$pending" \
                "read the logs above (${COMPOSE[*]} logs SERVICE); then run install.sh again"
        fi
        sleep 3
    done
}

STEP="starting the engine"
say "Starting the engine ($COMPOSE_PROJECT_NAME)"
compose up -d engine
wait_healthy engine
STEP="loading the workspace base image into the engine"
engine=$(container_of engine)
if ! docker exec "$engine" docker image inspect "$WORKSPACE_BASE" >/dev/null 2>&1; then
    say "Loading $WORKSPACE_BASE into the engine (templates build on it)"
    docker save "$BASE" | docker exec -i "$engine" docker load -q >/dev/null
    docker exec "$engine" docker tag "$BASE" "$WORKSPACE_BASE"
fi

if [ -n "$TOOLS_BUNDLE" ]; then
    STEP="importing the tools bundle"
    say "Importing the IDE's tools bundle from $TOOLS_BUNDLE"
    # Before the worker starts, so it finds the bundle instead of building one.
    compose run --rm -T --no-deps -v "$TOOLS_BUNDLE:/tmp/berth-tools-bundle.tar:ro" \
        worker berth tools import /tmp/berth-tools-bundle.tar
fi

STEP="starting the stack"
say "Starting the other services"
# Services wait for the ones they depend on; a slow first start can make compose give
# up early, so the wait below starts what is still missing.
compose up -d --remove-orphans || note "compose reported a problem; waiting for the services"

say "Waiting until every service is healthy"
wait_healthy $SERVICES
note "all healthy: $SERVICES"

# --- the first admin ----------------------------------------------------------------
STEP="creating the first admin"
PASSWORD=""
if [ -z "$(compose exec -T web berth admin list-users)" ]; then
    say "Creating the first admin, $ADMIN"
    PASSWORD=$(compose exec -T web berth admin create-user "$ADMIN" --admin --one-time-password 2>/dev/null | tr -d '\r')
    [ -n "$PASSWORD" ] || die "creating the admin failed" \
        "run: ${COMPOSE[*]} exec web berth admin create-user $ADMIN --admin --one-time-password"
fi

CA_NOTE=""
if [ "$TLS" = internal ]; then
    STEP="copying out the internal CA's root certificate"
    caddy=$(container_of caddy)
    for _ in $(seq 30); do
        docker cp "$caddy:/data/caddy/pki/authorities/local/root.crt" "$HERE/berth-root-ca.crt" 2>/dev/null && break
        sleep 1
    done
    [ -s "$HERE/berth-root-ca.crt" ] && CA_NOTE=1
fi

# --- done ---------------------------------------------------------------------------
say "Berth is running"
cat <<EOF

  Open:        $PUBLIC_URL
  Workspaces:  port $APPS_PORT ($( [ -n "$DOMAIN" ] && echo "https://<workspace>--<owner>.$DOMAIN:$APPS_PORT" || echo "https://$IP:$APPS_PORT/@<owner>/<workspace>/"))
  SSH:         ssh -p $SSH_PORT <workspace>@$HOST   (add your key on the Account page)
EOF
if [ -n "$PASSWORD" ]; then
    cat <<EOF
  Admin:       $ADMIN
  Password:    $PASSWORD
               (one-time: the first login asks for a new one)
EOF
else
    echo "  Admins:      unchanged (reset a password: ${COMPOSE[*]} exec web berth admin reset-password NAME --one-time-password)"
fi
if [ -n "$CA_NOTE" ]; then
    cat <<EOF

  TLS comes from Berth's own CA. Trust its root once on each computer that opens Berth:
    root certificate: $HERE/berth-root-ca.crt  (copy it there with scp)
    Debian/Ubuntu:  sudo cp berth-root-ca.crt /usr/local/share/ca-certificates/ && sudo update-ca-certificates
    macOS:          sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain berth-root-ca.crt
    Windows:        certutil -addstore -f ROOT berth-root-ca.crt
EOF
fi
cat <<EOF

  Metrics: $PUBLIC_URL/metrics with 'Authorization: Bearer <BERTH_METRICS_TOKEN from .env>'
  Single sign-on, roles, quotas, budgets: docs/governance.md (settings go in .env)

  Upgrade: git pull && sudo ./install.sh     Backups: $HERE/backups (nightly)
  Remove:  sudo ./install.sh --uninstall     (--purge also deletes workspaces and data)
EOF
