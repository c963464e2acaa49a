/*
 * YAML or JSON text to a cJSON tree, for the files a person writes (the
 * TriggerTemplate and the TriggerBinding). One document per file; what would
 * make a file mean something other than it reads (anchors, aliases, duplicate
 * keys, custom tags) is refused with the file and line. It knows nothing of
 * Tekton: gpuhook/template.h checks what the tree holds.
 */
#ifndef GPUHOOK_YAMLJSON_H
#define GPUHOOK_YAMLJSON_H

#include <stddef.h>

struct cJSON;

#define YAMLJSON_FILE_MAX (1024 * 1024)

/*
 * Loads a YAML or JSON file holding one document into a cJSON tree (caller
 * frees with cJSON_Delete). Quoted scalars stay strings; plain true/false,
 * null/~/empty, integers of up to 15 digits and JSON-style floats become
 * bools, nulls and numbers; everything else is a string. Anchors, aliases,
 * several documents, duplicate keys, non-scalar keys, custom tags and NUL
 * characters are refused. Returns 0, or GHE_IO / GHE_INVAL / GHE_TOOBIG /
 * GHE_NOMEM with "FILE:LINE: reason" (or "FILE: reason") in err. Only regular
 * files are read, and they are bounded at YAMLJSON_FILE_MAX bytes.
 */
int yamljson_load_file(const char *path, struct cJSON **out, char *err, size_t errlen);

/* The same for a buffer already in memory; name stands for the file in messages. */
int yamljson_load_string(const char *name, const char *data, size_t len, struct cJSON **out,
                         char *err, size_t errlen);

#endif
