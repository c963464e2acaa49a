/*
 * `gpuhook agent`: the binary in its DaemonSet mode on a GPU node. It serves
 * only GET /gpu (the probe's verbose body, plus "node" and per device
 * "compute_processes") and GET /healthz; it reads no config file and holds no
 * secret. The server's cluster view (clusterview.c) polls it.
 */
#ifndef GPUHOOK_AGENT_H
#define GPUHOOK_AGENT_H

/*
 * argv[0] is "agent". Flags: --listen HOST:PORT (else $GPUHOOK_AGENT_LISTEN,
 * else 0.0.0.0:8080), --node NAME (else $NODE_NAME, required). Serves until
 * SIGTERM or SIGINT. Returns the exit status (2 on bad arguments).
 */
int agent_main(int argc, char **argv);

#endif
