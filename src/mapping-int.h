/* mapping-int.h - the loaded form of a rule file, shared by mapfile.c
 * (loading, detection, parameters from Megatron args) and mapping.c
 * (applying the rules).  Not for other modules. */
#ifndef CKPT_MAPPING_INT_H
#define CKPT_MAPPING_INT_H

#include <jansson.h>
#include <regex.h>
#include <stddef.h>

struct mrule {
	regex_t re;
	json_t *j;          /* the rule object (borrowed from root) */
	int drop;
	size_t nunstack;
	int capture[4];     /* "from_capture": unstack variable k is capture N when it matched; 0: none */
};

struct ckpt_mapping {
	char *path;
	json_t *root;
	json_t *config;     /* borrowed, or own_config */
	json_t *own_config; /* made from Megatron args (ckpt_mapping_use_args) */
	char *args_label;   /* the file those args came from */
	struct mrule *r;
	size_t n;
};

#endif
