package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/s3mount/s3mount/mountopts"
)

type sent struct {
	level slog.Level
	line  string
}

// lineRecorder is a send func of lineHandler that keeps what it was given.
type lineRecorder struct {
	mu    sync.Mutex
	lines []sent
}

func (r *lineRecorder) send(l slog.Level, line string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, sent{l, line})
	return nil
}

func TestLineHandlerFormatsOneLinePerRecord(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		rec := &lineRecorder{}
		log := slog.New(&lineHandler{format: format, opts: &slog.HandlerOptions{Level: slog.LevelInfo}, send: rec.send})
		log.Debug("hidden")
		log.With("mount", "/mnt/team").WithGroup("s3").Warn("s3 request failed", "op", "GetObject", "status", 503)
		log.Error("multi\nline")
		if len(rec.lines) != 2 {
			t.Fatalf("%s: %d lines sent, want 2 (debug is below the level): %v", format, len(rec.lines), rec.lines)
		}
		if rec.lines[0].level != slog.LevelWarn || rec.lines[1].level != slog.LevelError {
			t.Errorf("%s: levels %v, %v", format, rec.lines[0].level, rec.lines[1].level)
		}
		for _, s := range rec.lines {
			if strings.Contains(s.line, "\n") || strings.Contains(s.line, "time") {
				t.Errorf("%s: line %q has a newline or a time (journald and syslog add it)", format, s.line)
			}
		}
		got := rec.lines[0].line
		if format == "text" {
			want := `level=WARN msg="s3 request failed" mount=/mnt/team s3.op=GetObject s3.status=503`
			if got != want {
				t.Errorf("text line %q, want %q", got, want)
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(got), &m); err != nil {
			t.Fatalf("json line %q: %v", got, err)
		}
		s3, _ := m["s3"].(map[string]any)
		if m["msg"] != "s3 request failed" || m["mount"] != "/mnt/team" || s3["op"] != "GetObject" || s3["status"] != float64(503) {
			t.Errorf("json line %q", got)
		}
	}
}

func TestNewLoggerDestinations(t *testing.T) {
	o := mountopts.Default()
	o.LogFormat = "json"
	o.Debug = true
	o.LogFile = filepath.Join(t.TempDir(), "s3mount.log")
	log, dest, closer, err := newLogger(o, true)
	if err != nil {
		t.Fatal(err)
	}
	if dest != o.LogFile {
		t.Errorf("dest %q, want the log file", dest)
	}
	log.Debug("traced", "op", "LOOKUP")
	closer.Close()
	b, _ := os.ReadFile(o.LogFile)
	if !strings.Contains(string(b), `"msg":"traced","op":"LOOKUP"`) {
		t.Errorf("--debug --log-format json --log-file wrote %q", b)
	}
	if st, err := os.Stat(o.LogFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode: %v, %v; want 0600", st.Mode(), err)
	}
	o.LogFile = ""
	if _, dest, _, _ := newLogger(o, false); dest != "stderr" {
		t.Errorf("foreground without --log-file logs to %q, want stderr", dest)
	}
	_, dest, closer, err = newLogger(o, true)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	want := "syslog"
	if _, err := os.Stat(journalSocket); err == nil {
		want = "journald"
	}
	if dest != want && !strings.HasPrefix(dest, "nowhere") {
		t.Errorf("daemon without --log-file logs to %q, want %s", dest, want)
	}
	o.LogFile = "/nonexistent-dir/s3mount.log"
	if _, _, _, err := newLogger(o, true); err == nil || !strings.Contains(err.Error(), "--log-file") {
		t.Errorf("unwritable log file: %v, want an error naming --log-file", err)
	}
}
