# Sourced by benchmarks: a primary and a secondary node on this machine (two georepd, the
# secondary a local peer, as scripts/demo sets them up) on a fresh ext4 image, volumes pvol
# and svol, the session pvol -> TAG-s::svol created and started, the primary volume mounted
# at $BASE/fs/pm. Set BASE (a directory of the bench's own), TAG (the nodes' name prefix) and
# FILES and SIZE (the image holds a run's files on both bricks, with room; IMG_MB overrides)
# first; then `two_nodes_up`. Gives `node p|s` (the node's
# environment), `geo WORDS...` (the session's commands), $API (the primary's API address) and
# $TOKEN. Everything is taken down on exit.

node() { echo "GEOREP_STATE_DIR=$BASE/$1/state GEOREP_CONFIG_DIR=$BASE/$1/etc GEOREP_LOG_DIR=$BASE/$1/log GEOREP_RUN_DIR=$BASE/$1/run"; }
geo() { env $(node p) georep volume geo-replication pvol "$TAG-s::svol" "$@"; }

two_nodes_down() {
  mountpoint -q "$BASE/fs/pm" 2>/dev/null && umount "$BASE/fs/pm"
  pkill -f "georepd --node-name $TAG-" || true
  sleep 0.5
  for m in $(awk -v d="$BASE" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do umount -l "$m" || true; done
  rm -rf "$BASE"
}

two_nodes_up() {
  trap two_nodes_down EXIT
  two_nodes_down
  mkdir -p "$BASE/fs" "$BASE/s" "$BASE/p"
  local img=${IMG_MB:-$(( 4 * FILES * (SIZE + 4096) * 13 / 10 / 1048576 + 2048 ))}
  truncate -s "${img}M" "$BASE/ext4.img"; mkfs.ext4 -q -F "$BASE/ext4.img"; mount -o loop "$BASE/ext4.img" "$BASE/fs"
  env $(node s) georepd --node-name "$TAG-s" --listen none > "$BASE/s/georepd.log" 2>&1 &
  env $(node p) georepd --node-name "$TAG-p" --listen 127.0.0.1:0 --local-peer "$TAG-s=$BASE/s/run" > "$BASE/p/georepd.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$BASE/s/run/georepd.sock" ] && [ -S "$BASE/p/run/georepd.sock" ] && break; sleep 0.1; done
  env $(node p) georep volume create pvol "$TAG-p:$BASE/fs/pb" >/dev/null
  env $(node p) georep volume start pvol >/dev/null
  env $(node s) georep volume create svol "$TAG-s:$BASE/fs/sb" >/dev/null
  env $(node s) georep volume start svol >/dev/null
  mkdir -p "$BASE/fs/pm"
  env $(node p) mount -t georep pvol "$BASE/fs/pm"
  geo create push-pem >/dev/null
  geo start >/dev/null
  API=$(cat "$BASE/p/run/api.addr")
  TOKEN=$(env $(node p) georep api-token)
}
