#ifndef LB_IO_CONFIG_INTERNAL_H
#define LB_IO_CONFIG_INTERNAL_H

#include <jansson.h>

#include "lowbit.h"

lb_status lb_config_from_json(const json_t *root, const char *label, lb_config *c, lb_error *err);
lb_status lb_generation_config_from_json(const json_t *root, const char *label,
                                         lb_generation_config *g, lb_error *err);

#endif
