/*
 * A validating JSON parser that builds cJSON nodes only for the paths asked
 * for. A GitHub payload is mostly text nobody reads (commit lists, URLs,
 * avatars); gpuhook needs a dozen fields and whatever the bindings'
 * $(body.…) expressions name. Every byte is still checked against the JSON
 * grammar, but unwanted values are skipped, so a 25 MB push costs a scan and
 * a handful of nodes instead of a tree as big as the body.
 */
#ifndef GPUHOOK_JSONPRUNE_H
#define GPUHOOK_JSONPRUNE_H

#include <stdbool.h>
#include <stddef.h>

struct cJSON;

/*
 * One step of a path: an object key, an array index, or anything. An array
 * keeps only the elements a step matches, so an index step renumbers what
 * follows it; a step with any keeps every element (and member), so indexes
 * into the kept array hold.
 */
struct jsonprune_seg {
    const char *key; /* matched against object keys; may be NULL for index-only steps */
    long index;      /* matched against array indexes, -1 for none */
    bool any;        /* matches every array element and every object member */
};

/* A path from the root. A path of no steps keeps the whole document. */
struct jsonprune_path {
    const struct jsonprune_seg *segs;
    size_t n;
};

#define JSONPRUNE_MAX_PATHS 64

/*
 * Parses text (len bytes, already checked to be UTF-8 without NUL) whose top
 * level must be an object, keeping the values at paths (and the containers
 * leading to them). A kept number node carries the text the payload wrote in
 * its valuestring (jsonpath_print_json prints it from there). Nesting deeper
 * than max_depth is an error. Returns 0 and
 * sets *out (free with cJSON_Delete), or GHE_INVAL with a message in err, or
 * GHE_NOMEM.
 */
int jsonprune_parse(const char *text, size_t len, const struct jsonprune_path *paths, size_t npaths,
                    int max_depth, struct cJSON **out, char *err, size_t errlen);

#endif
