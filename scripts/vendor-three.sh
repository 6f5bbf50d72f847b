#!/usr/bin/env bash
# Rebuild talkbench/viewer/static/three.min.js from the npm registry at pinned versions.
#
# three.js ships ES modules only (build/three.module.js + build/three.core.js, addons under examples/jsm),
# and Chromium refuses module scripts on file:// pages ("blocked by CORS policy"), so a viewer opened from
# disk could not start. esbuild bundles the parts the viewer uses (below) with the OrbitControls addon into
# one classic script that defines the global THREE; a <script src> loads it from disk and from a server.
# esbuild is a build tool only: nothing of it is shipped. three.js's licence travels as THREE_LICENSE.
set -euo pipefail
THREE_VERSION=0.187.0
ESBUILD_VERSION=0.28.2
static="$(cd "$(dirname "$0")/.." && pwd)/talkbench/viewer/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "three@$THREE_VERSION" "esbuild@$ESBUILD_VERSION"
cat > entry.js <<'JS'
export {
  AmbientLight, BufferAttribute, BufferGeometry, Color, DirectionalLight, DoubleSide, HemisphereLight, Mesh,
  MeshLambertMaterial, PerspectiveCamera, REVISION, SRGBColorSpace, Scene, Vector2, Vector3, WebGLRenderer,
} from "three";
export { OrbitControls } from "three/addons/controls/OrbitControls.js";
JS
node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=THREE --minify \
  --legal-comments=inline --target=es2020 --log-level=warning --outfile="$static/three.min.js"
sed -i "1i /* three.js $THREE_VERSION (npm), bundled by scripts/vendor-three.sh with esbuild $ESBUILD_VERSION */" \
  "$static/three.min.js"
cp node_modules/three/LICENSE "$static/THREE_LICENSE"
echo "wrote $static/three.min.js ($(wc -c < "$static/three.min.js") bytes) and THREE_LICENSE"
