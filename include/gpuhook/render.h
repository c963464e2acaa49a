/*
 * `gpuhook render`: the offline twin of POST /webhook. It loads the config
 * without secrets, parses a payload file, applies the same ignore rules and
 * selection, and prints the PipelineRun it would create. No network, no GPU.
 */
#ifndef GPUHOOK_RENDER_H
#define GPUHOOK_RENDER_H

/*
 * Runs the subcommand; argv[0] is "render". Returns the exit code: 0 when a
 * run would be created, 3 when the delivery would be ignored, 2 on errors.
 */
int render_main(int argc, char **argv, const char *default_config);

#endif
