/* Plots for the command-line program: a labelled scatter plot as a standalone SVG file (no
 * dependency: the file is text a browser shows as it is). */
#ifndef LB_TOOLS_PLOT_H
#define LB_TOOLS_PLOT_H

#include <stdbool.h>
#include <stddef.h>

#include "lowbit.h"

typedef struct cli_point {
  double x, y;
  const char *label; /* shown beside the point; NULL: none */
} cli_point;

typedef struct cli_plot {
  const char *title, *xlabel, *ylabel;
  bool log_y;       /* y on a log scale (points with y <= 0 sit on the axis, drawn hollow) */
  const char *note; /* a line under the axes, or NULL */
  const cli_point *pts;
  size_t n;
} cli_plot;

/* The plot as SVG text in a malloc'd, NUL-terminated string (*len bytes). */
lb_status cli_plot_svg(const cli_plot *p, char **out, size_t *len, lb_error *err);
/* The same written to path (under a temporary name, renamed into place when complete). */
lb_status cli_plot_svg_file(const cli_plot *p, const char *path, lb_error *err);

#endif
