#!/usr/bin/env bash
# Prints where gpuhook will listen, where its secrets are, and a curl that triggers a run.
set -euo pipefail
config=${1:-config/gpuhook.json}
listen=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("listen","127.0.0.1:8080"))' "$config")
cat <<EOT

gpuhook is starting on http://$listen (config: $config)
  webhook secret: var/webhook-secret   (paste it into GitHub's webhook "Secret" field)
  trigger token:  var/trigger-token
  runs are written to var/pipelineruns/ (kubectl create -f var/pipelineruns/ submits them)

Trigger a run:
  curl -sS -X POST http://$listen/trigger \\
    -H "Authorization: Bearer \$(cat var/trigger-token)" \\
    -H 'Content-Type: application/json' \\
    -d '{"variant":"lite","revision":"main"}'

EOT
