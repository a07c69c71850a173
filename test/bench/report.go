package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/s3mount/s3mount/test/harness"
)

// cell is one figure's samples (one per run) and errors.
type cell struct {
	vals []float64
	errs []string
}

type results struct {
	mu sync.Mutex
	m  map[string]map[string]*cell
}

func newResults() *results { return &results{m: map[string]map[string]*cell{}} }

func (r *results) add(row, col string, v float64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[row] == nil {
		r.m[row] = map[string]*cell{}
	}
	c := r.m[row][col]
	if c == nil {
		c = &cell{}
		r.m[row][col] = c
	}
	if err != nil {
		c.errs = append(c.errs, err.Error())
	} else {
		c.vals = append(c.vals, v)
	}
}

// median of the successful samples; ok is false when there are none.
func (r *results) median(row, col string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.m[row][col]
	if c == nil || len(c.vals) == 0 {
		return 0, false
	}
	v := slices.Clone(c.vals)
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2], true
	}
	return (v[n/2-1] + v[n/2]) / 2, true
}

func (r *results) cell(row, col string) *cell {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[row][col]
}

type rowDef struct {
	key, title, unit string
	prec             int
}

func (b *bench) rows() []rowDef {
	c := b.cfg
	return []rowDef{
		{"ceil1", "raw SDK GET, 1 stream", "MB/s", 0},
		{"ceilN", fmt.Sprintf("raw SDK GET, %d x %s ranges", c.streams, fmtSize(c.rangeSize)), "MB/s", 0},
		{"local", "local file, page-cache re-read", "MB/s", 0},
		{"local4k", "  same on tmpfs huge=never (4K pages)", "MB/s", 0},
		{"cold", fmt.Sprintf("cold sequential read %s", fmtSize(c.size)), "MB/s", 0},
		{"warm", fmt.Sprintf("warm re-read %s", fmtSize(c.size)), "MB/s", 0},
		{"coldcp", "  cold, --copy-cache-size", "MB/s", 0},
		{"warmcp", "  warm re-read from the copy", "MB/s", 0},
		{"rand", fmt.Sprintf("%d x %s reads, random offsets", c.randomN, fmtSize(c.randomBS)), "MB/s", 0},
		{"randx", "  S3 bytes fetched / byte read", "ratio", 2},
		{"ttfb", "first byte, cold 1-byte read", "ms", 1},
		{"rssmbps", fmt.Sprintf("sequential read %s", fmtSize(c.rssSize)), "MB/s", 0},
		{"rss", "  peak RSS during it (VmHWM)", "MiB", 0},
		{"ls", fmt.Sprintf("ls -l, %d objects", c.lsObjects), "s", 2},
		{"find", fmt.Sprintf("find + du -s, %d files", b.treeFiles), "s", 2},
		{"wceil", fmt.Sprintf("raw multipart PUT, %v parts", c.writeDefault), "MB/s", 0},
		{"wceilbest", "raw multipart PUT, best setting", "MB/s", 0},
		{"wseq", fmt.Sprintf("sequential write %s (dd conv=fsync)", fmtSize(c.size)), "MB/s", 0},
		{"wrss", "  peak RSS during it (VmHWM)", "MiB", 0},
		{"small", fmt.Sprintf("create %d x %s files, one process", c.smallN, fmtSize(c.smallSize)), "s", 2},
		{"untar", fmt.Sprintf("tar x of %s, %d files", filepath.Base(c.untarTree), b.tarFiles), "s", 2},
	}
}

func rowTitle(key string, b *bench) string {
	for _, r := range b.rows() {
		if r.key == key {
			return strings.TrimSpace(r.title)
		}
	}
	switch key {
	case "real-ceil1":
		return "realistic, raw SDK 1 stream"
	case "real-ceilN":
		return "realistic, raw SDK ranges"
	}
	if strings.HasPrefix(key, "real-") {
		return "realistic, --download-threads " + strings.TrimPrefix(key, "real-")
	}
	return key
}

func (b *bench) columns() []string {
	return append([]string{"reference", "s3mount"}, b.cfg.peers...)
}

func (b *bench) fmtCell(row, col string, prec int) string {
	if col != "reference" && col != "s3mount" && b.peerStatus[col] != "" && b.res.cell(row, col) == nil {
		return "skipped"
	}
	c := b.res.cell(row, col)
	if c == nil {
		return ""
	}
	v, ok := b.res.median(row, col)
	if !ok {
		return "error"
	}
	s := fmt.Sprintf("%.*f", prec, v)
	if len(c.errs) > 0 {
		s += fmt.Sprintf(" (%d err)", len(c.errs))
	}
	return s
}

func (b *bench) report() string {
	c := b.cfg
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	p("s3mount bench (issue 4), %s: each figure is the median of %d run(s), all measured in this run\n",
		time.Now().Format("2006-01-02 15:04"), c.runs)
	p("machine: %d CPUs, %s, %s; server: versitygw %s on 127.0.0.1 (posix backend; its files pre-read into the page cache before each row)\n",
		runtime.NumCPU(), kernel(), runtime.Version(), harness.VersitygwVersion)
	extra := strings.Join(c.s3mountFlags, " ")
	if extra == "" {
		extra = "none"
	}
	p("s3mount: %s (work tree %s), --cache-size %s, extra flags: %s\n", c.s3mountBin, gitRev(), c.cacheSize, extra)
	for _, name := range c.peers {
		st := b.peerStatus[name]
		if st == "" {
			st = "ran"
		}
		ver := ""
		for _, m := range b.mounters {
			switch m := m.(type) {
			case *s3fsM:
				if name == "s3fs" {
					ver = m.version + ", -o use_path_request_style " + strings.Join(m.flags, " ")
				}
			case *rcloneM:
				if name == "rclone" {
					ver = m.version + ", --vfs-cache-mode off " + strings.Join(m.flags, " ")
				}
			}
		}
		if ver != "" {
			ver = " (" + strings.TrimSpace(ver) + ")"
		}
		p("peer %s%s: %s\n", name, ver, st)
	}
	if len(c.peers) == 0 {
		p("peers: none requested\n")
	}
	if len(c.skip) > 0 {
		var s []string
		for k := range c.skip {
			s = append(s, k)
		}
		sort.Strings(s)
		p("skipped sections: %s\n", strings.Join(s, ", "))
	}
	drop := "sync + drop_caches"
	if !c.dropCaches {
		drop = "no drop_caches (-drop-caches=false)"
	}
	p("cold rows: fresh mount, %s; random reads through a counting proxy (fixed offsets, %d-byte aligned); ls/find: fresh mount\n", drop, c.randomAlign)
	if !c.skip["write"] || !c.skip["small"] || !c.skip["untar"] {
		p("write rows: fresh mount; the source file in the page cache; what was written is checked in S3 after the unmount\n")
	}
	if len(b.bestWrite) > 0 {
		p("raw multipart: %v (s3mount's --upload-concurrency x --part-size defaults) and the best of %v; best per run: %s\n",
			c.writeDefault, append([]uploadSetting{c.writeDefault}, c.writeGrid...), strings.Join(b.bestWrite, " "))
	}
	p("\n")

	cols := b.columns()
	const tw = 36
	p("%-*s %-6s", tw, "workload", "unit")
	for _, col := range cols {
		p(" %12s", col)
	}
	p("\n%s\n", strings.Repeat("-", tw+7+13*len(cols)))
	for _, r := range b.rows() {
		any := false
		for _, col := range cols {
			if b.res.cell(r.key, col) != nil {
				any = true
			}
		}
		if !any {
			continue
		}
		p("%-*s %-6s", tw, r.title, r.unit)
		for _, col := range cols {
			p(" %12s", b.fmtCell(r.key, col, r.prec))
		}
		p("\n")
	}

	if !c.skip["realistic"] {
		p("\nrealistic network: s3mount through a shaping proxy (%v first byte per response, %s/s per connection), cold dd of %s\n",
			c.latency, fmtSize(c.bandwidth), fmtSize(c.realSize))
		p("%-*s", tw+7, "--download-threads")
		for _, n := range c.realThreads {
			p(" %8d", n)
		}
		p("\n%-*s", tw+7, "MB/s")
		for _, n := range c.realThreads {
			p(" %8s", b.fmtCell(realRow(n), "s3mount", 0))
		}
		p("\n%-*s %8s MB/s one stream, %s MB/s %d x %s ranges\n", tw+7, "raw SDK through the same proxy:",
			b.fmtCell("real-ceil1", "reference", 0), b.fmtCell("real-ceilN", "reference", 0), c.streams, fmtSize(c.rangeSize))
	}

	p("\ntargets (ratios of the medians above)\n")
	for _, t := range b.targets() {
		p("%-4s  %-52s %s\n", t.verdict, t.name, t.detail)
	}

	if len(b.notes) > 0 {
		p("\nnotes\n")
		seen := map[string]bool{}
		for _, n := range b.notes {
			if !seen[n] {
				seen[n] = true
				p("- %s\n", n)
			}
		}
	}

	p("\nraw samples per run\n")
	keys := b.rows()
	keys = append(keys, rowDef{key: "real-ceil1"}, rowDef{key: "real-ceilN"})
	for _, n := range c.realThreads {
		keys = append(keys, rowDef{key: realRow(n)})
	}
	for _, r := range keys {
		k := r.key
		for _, col := range cols {
			cl := b.res.cell(k, col)
			if cl == nil {
				continue
			}
			var vs []string
			for _, v := range cl.vals {
				vs = append(vs, fmt.Sprintf("%.*f", r.prec, v))
			}
			if len(cl.errs) > 0 {
				vs = append(vs, fmt.Sprintf("%d error(s)", len(cl.errs)))
			}
			p("  %-9s %-36s %s\n", col, rowTitle(k, b), strings.Join(vs, " "))
		}
	}
	return w.String()
}

type target struct{ verdict, name, detail string }

func (b *bench) targets() []target {
	c := b.cfg
	var ts []target
	m := func(row, col string) (float64, bool) { return b.res.median(row, col) }
	// fastest peer for a row: max (higher is better) or min.
	fastest := func(row string, higher bool) (float64, string, bool) {
		best, who, ok := 0.0, "", false
		for _, name := range c.peers {
			v, vok := m(row, name)
			if !vok {
				continue
			}
			if !ok || (higher && v > best) || (!higher && v < best) {
				best, who, ok = v, name, true
			}
		}
		return best, who, ok
	}
	add := func(name string, ratio float64, ok bool, pass bool, detail string) {
		if !ok || math.IsNaN(ratio) || math.IsInf(ratio, 0) {
			ts = append(ts, target{"n/a", name, detail})
			return
		}
		v := "FAIL"
		if pass {
			v = "PASS"
		}
		ts = append(ts, target{v, name, fmt.Sprintf("%.2f  %s", ratio, detail)})
	}

	cold, okCold := m("cold", "s3mount")
	ceil, okCeil := m("ceilN", "reference")
	r := cold / ceil
	add("cold seq >= 0.85 x parallel-range ceiling", r, okCold && okCeil, r >= 0.85,
		fmt.Sprintf("(%.0f / %.0f MB/s)", cold, ceil))

	pc, who, okP := fastest("cold", true)
	r = cold / pc
	d := fmt.Sprintf("(%.0f / %.0f MB/s, %s)", cold, pc, who)
	if !okP {
		d = "(no peer measured)"
	}
	add("cold seq >= 1.5 x fastest peer", r, okCold && okP, r >= 1.5, d)

	warm, okW := m("warm", "s3mount")
	local, okL := m("local", "reference")
	r = warm / local
	add("warm re-read >= 0.8 x local page-cache read", r, okW && okL, r >= 0.8,
		fmt.Sprintf("(%.0f / %.0f MB/s)", warm, local))
	if l4, ok := m("local4k", "reference"); ok && okW {
		// Not a target: the same page-cache read at the folio size the
		// kernel gives FUSE files (4 KiB up to at least Linux 6.18).
		ts = append(ts, target{"info", "warm re-read / tmpfs (4K pages) page-cache read",
			fmt.Sprintf("%.2f  (%.0f / %.0f MB/s)", warm/l4, warm, l4)})
	}

	if wc, ok := m("warmcp", "s3mount"); ok && okL {
		// Not the target's figure (that is the default mount's, with
		// no local copies): what --copy-cache-size gives.
		cc, _ := m("coldcp", "s3mount")
		ts = append(ts, target{"info", "warm re-read from a local copy / local page-cache read",
			fmt.Sprintf("%.2f  (%.0f / %.0f MB/s; its cold read %.0f MB/s)", wc/local, wc, local, cc)})
	}

	rx, okR := m("randx", "s3mount")
	add("random reads <= 2 bytes fetched per byte read", rx, okR, rx <= 2, "(bytes from the server / bytes read)")

	r1, ok1 := m(realRow(1), "s3mount")
	r8, ok8 := m(realRow(8), "s3mount")
	r = r8 / r1
	add("realistic: 8 threads >= 6 x 1 thread", r, ok1 && ok8, r >= 6,
		fmt.Sprintf("(%.0f / %.0f MB/s)", r8, r1))

	rss, okRSS := m("rss", "s3mount")
	cs, _ := parseSize(c.cacheSize)
	limit := float64(cs)/(1<<20) + 100
	r = rss / limit
	add("peak RSS <= cache-size + 100 MiB", r, okRSS, rss <= limit,
		fmt.Sprintf("(%.0f MiB / %.0f MiB, --cache-size %s)", rss, limit, c.cacheSize))

	wseq, okWS := m("wseq", "s3mount")
	for _, row := range []struct{ key, name string }{
		{"wceil", fmt.Sprintf("seq write >= 0.85 x raw multipart %v", c.writeDefault)},
		{"wceilbest", "seq write >= 0.85 x best raw multipart setting"},
	} {
		ceil, okC := m(row.key, "reference")
		r := wseq / ceil
		add(row.name, r, okWS && okC, r >= 0.85, fmt.Sprintf("(%.0f / %.0f MB/s)", wseq, ceil))
	}
	wrss, okWR := m("wrss", "s3mount")
	r = wrss / limit
	add("peak RSS while writing <= cache-size + 100 MiB", r, okWR, wrss <= limit,
		fmt.Sprintf("(%.0f MiB / %.0f MiB)", wrss, limit))

	for _, row := range []struct{ key, name string }{
		{"ls", fmt.Sprintf("ls -l %d objects no slower than fastest peer", c.lsObjects)},
		{"find", "find + du no slower than fastest peer"},
	} {
		v, okV := m(row.key, "s3mount")
		pv, who, okP := fastest(row.key, false)
		r := v / pv
		d := fmt.Sprintf("(%.2f / %.2f s, %s)", v, pv, who)
		if !okP {
			d = "(no peer measured)"
		}
		add(row.name, r, okV && okP, r <= 1, d)
	}
	return ts
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "linux"
	}
	return "linux " + strings.TrimSpace(string(b))
}

func gitRev() string {
	root, err := harness.RepoRoot()
	if err != nil {
		return "unknown rev"
	}
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown rev"
	}
	return "git " + strings.TrimSpace(string(out))
}
