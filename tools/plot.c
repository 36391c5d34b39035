/* A labelled scatter plot as SVG (plot.h): axes with round ticks (1, 2 or 5 times a power of ten;
 * decades on a log scale, with light lines at 2..9 of each), grid lines, one point and label per
 * entry, title, axis names and a note. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "io/fs.h"

enum { W = 760, H = 470, L = 84, R = 36, T = 48, B = 76 };
#define PW (W - L - R)
#define PH (H - T - B)

static void esc(FILE *f, const char *s) {
  for (; s && *s; s++) switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
}

/* A round step near range / 5: 1, 2 or 5 times a power of ten. */
static double nice_step(double range) {
  const double raw = range / 5, p = pow(10, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

typedef struct {
  double lo, hi; /* the axis' ends, in plotted units (log10 of y on a log scale) */
  bool log;
} axis;

static double pos(const axis *a, double v, double len) { return (v - a->lo) / (a->hi - a->lo) * len; }

lb_status cli_plot_svg(const cli_plot *p, char **out, size_t *len, lb_error *err) {
  *out = NULL, *len = 0;
  if (!p->n) return lb_fail(err, LB_EINVAL, "plot: no points");
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (size_t i = 0; i < p->n; i++) {
    const double x = p->pts[i].x, y = p->pts[i].y;
    if (!isfinite(x) || !isfinite(y)) return lb_fail(err, LB_EINVAL, "plot: point %zu is not finite", i);
    x0 = fmin(x0, x), x1 = fmax(x1, x);
    if (!p->log_y || y > 0) y0 = fmin(y0, p->log_y ? log10(y) : y), y1 = fmax(y1, p->log_y ? log10(y) : y);
  }
  const double xpad = x1 > x0 ? 0.08 * (x1 - x0) : 1;
  axis ax = {x0 - xpad, x1 + xpad, false}, ay;
  if (p->log_y && isfinite(y0)) {
    ay = (axis){floor(y0), ceil(y1), true};
    if (ay.hi <= ay.lo) ay.hi = ay.lo + 1;
  } else {
    if (!isfinite(y0)) y0 = 0, y1 = 1;
    const double ypad = y1 > y0 ? 0.08 * (y1 - y0) : 1;
    ay = (axis){y0 - ypad, y1 + ypad, false};
  }
  FILE *f = open_memstream(out, len);
  if (!f) return lb_fail(err, LB_ENOMEM, "plot: out of memory");
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
             "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  fprintf(f, "<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
  esc(f, p->title);
  fputs("</text>\n", f);
  /* grid and ticks: x */
  const double sx = nice_step(ax.hi - ax.lo);
  for (double v = ceil(ax.lo / sx) * sx; v <= ax.hi + 1e-9 * sx; v += sx) {
    const double px = L + pos(&ax, v, PW);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", px, T, px, T + PH);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", px, T + PH + 18, fabs(v) < 1e-12 * sx ? 0 : v);
  }
  /* grid and ticks: y */
  if (ay.log) {
    for (double d = ay.lo; d <= ay.hi + 1e-9; d += 1) {
      const double py = T + PH - pos(&ay, d, PH);
      fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ccc\"/>\n", L, py, L + PW, py);
      fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 8, py + 4, pow(10, d));
      for (int k = 2; k < 10 && d < ay.hi; k++) {
        const double pk = T + PH - pos(&ay, d + log10(k), PH);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>\n", L, pk, L + PW, pk);
      }
    }
  } else {
    const double sy = nice_step(ay.hi - ay.lo);
    for (double v = ceil(ay.lo / sy) * sy; v <= ay.hi + 1e-9 * sy; v += sy) {
      const double py = T + PH - pos(&ay, v, PH);
      fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, L + PW, py);
      fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 8, py + 4, fabs(v) < 1e-12 * sy ? 0 : v);
    }
  }
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", L, T, PW, PH);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", L + PW / 2, T + PH + 40);
  esc(f, p->xlabel);
  fprintf(f, "</text>\n<text transform=\"translate(20 %d) rotate(-90)\" text-anchor=\"middle\">", T + PH / 2);
  esc(f, p->ylabel);
  fputs("</text>\n", f);
  if (p->note) {
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#555\">", L, H - 10);
    esc(f, p->note);
    fputs("</text>\n", f);
  }
  /* points: on the axis when y <= 0 on a log scale (hollow); then each label at the first of four
   * places beside its point (above or below, right or left; left first in the right quarter)
   * that overlaps no other point (9 px around it) and no label placed before it, judged by a
   * width of 7 px a character */
  double (*at)[2] = calloc(p->n, sizeof *at), (*box)[4] = calloc(p->n, sizeof *box);
  for (size_t i = 0; at && i < p->n; i++) {
    const cli_point *q = &p->pts[i];
    const bool off = ay.log && q->y <= 0;
    at[i][0] = L + pos(&ax, q->x, PW), at[i][1] = off ? T + PH : T + PH - pos(&ay, ay.log ? log10(q->y) : q->y, PH);
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\" stroke=\"#1f5fa8\" stroke-width=\"1.5\"/>\n",
            at[i][0], at[i][1], off ? "white" : "#1f5fa8");
  }
  for (size_t i = 0, nbox = 0; at && box && i < p->n; i++) {
    const char *label = p->pts[i].label;
    if (!label) continue;
    const double px = at[i][0], py = at[i][1], w = 7.0 * (double)strlen(label);
    const bool right_first = px <= L + 0.75 * PW;
    double bx = 0, by = 0;
    bool left = false;
    for (int k = 0; k < 4; k++) {
      left = (k >= 2) == right_first;
      bx = left ? px - 8 - w : px + 8, by = k % 2 ? py + 18 : py - 6; /* by: the baseline */
      bool clash = false;
      for (size_t j = 0; j < p->n && !clash; j++)
        clash = j != i && bx < at[j][0] + 9 && bx + w > at[j][0] - 9 && by - 12 < at[j][1] + 9 && by > at[j][1] - 9;
      for (size_t j = 0; j < nbox && !clash; j++)
        clash = bx < box[j][1] && bx + w > box[j][0] && by - 12 < box[j][3] && by > box[j][2];
      if (!clash) break;
    }
    box[nbox][0] = bx, box[nbox][1] = bx + w, box[nbox][2] = by - 12, box[nbox][3] = by, nbox++;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", left ? bx + w : bx, by, left ? "end" : "start");
    esc(f, label);
    fputs("</text>\n", f);
  }
  const bool placed = at && box;
  free(at), free(box);
  if (!placed) {
    fclose(f), free(*out), *out = NULL;
    return lb_fail(err, LB_ENOMEM, "plot: out of memory");
  }
  fputs("</svg>\n", f);
  if (fclose(f) != 0 || !*out) {
    free(*out), *out = NULL;
    return lb_fail(err, LB_ENOMEM, "plot: out of memory");
  }
  return LB_OK;
}

lb_status cli_plot_svg_file(const cli_plot *p, const char *path, lb_error *err) {
  char *svg = NULL;
  size_t len = 0;
  lb_status s = cli_plot_svg(p, &svg, &len, err);
  if (s == LB_OK) s = lb_write_file_atomic(path, svg, len, err);
  free(svg);
  return s;
}
