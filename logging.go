package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/s3mount/s3mount/mountopts"
)

// journalSocket is where journald listens (systemd-journald.service(8)).
const journalSocket = "/run/systemd/journal/socket"

// newLogger makes the slog logger the options ask for, and says where it
// writes ("stderr", "journald", "syslog" or the file). Format: --log-format
// (text or json); level: --log-level, or debug with --debug. Destination:
// --log-file when given; else stderr in the foreground; else, as a daemon,
// journald when its socket exists, else syslog (daemon facility, tag
// s3mount); a daemon that can reach neither logs nothing. The returned
// closer closes the destination.
func newLogger(o mountopts.Options, daemon bool) (*slog.Logger, string, io.Closer, error) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.LogLevel))
	if o.Debug {
		lvl = slog.LevelDebug
	}
	hopts := &slog.HandlerOptions{Level: lvl}
	switch {
	case o.LogFile != "":
		f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, "", nil, fmt.Errorf("option --log-file: %w", err)
		}
		return slog.New(formatHandler(o.LogFormat, f, hopts)), o.LogFile, f, nil
	case !daemon:
		return slog.New(formatHandler(o.LogFormat, os.Stderr, hopts)), "stderr", io.NopCloser(nil), nil
	}
	if _, err := os.Stat(journalSocket); err == nil && journal.Enabled() {
		return slog.New(&lineHandler{format: o.LogFormat, opts: hopts, send: sendJournal}), "journald", io.NopCloser(nil), nil
	}
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "s3mount")
	if err != nil {
		return slog.New(slog.NewTextHandler(io.Discard, hopts)), "nowhere (no journald, no syslog)", io.NopCloser(nil), nil
	}
	return slog.New(&lineHandler{format: o.LogFormat, opts: hopts, send: syslogSender(w)}), "syslog", w, nil
}

// formatHandler is slog's text or JSON handler.
func formatHandler(format string, w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// lineHandler formats each record as one line with slog's text or JSON
// handler (without the time, which journald and syslog add) and hands it,
// with its level, to send: one journal entry or syslog message per record.
type lineHandler struct {
	format string
	opts   *slog.HandlerOptions
	send   func(slog.Level, string) error
	// with are the WithAttrs and WithGroup calls, in order, replayed on
	// the formatter of each record.
	with []func(slog.Handler) slog.Handler
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.opts.Level.Level()
}

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf bytes.Buffer
	opts := *h.opts
	opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	f := formatHandler(h.format, &buf, &opts)
	for _, w := range h.with {
		f = w(f)
	}
	if err := f.Handle(ctx, r); err != nil {
		return err
	}
	return h.send(r.Level, string(bytes.TrimRight(buf.Bytes(), "\n")))
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.plus(func(f slog.Handler) slog.Handler { return f.WithAttrs(attrs) })
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	return h.plus(func(f slog.Handler) slog.Handler { return f.WithGroup(name) })
}

func (h *lineHandler) plus(w func(slog.Handler) slog.Handler) slog.Handler {
	c := *h
	c.with = append(append([]func(slog.Handler) slog.Handler(nil), h.with...), w)
	return &c
}

// sendJournal writes one journal entry (sd_journal_send(3)) with the
// level's syslog priority.
func sendJournal(l slog.Level, line string) error {
	pri := journal.PriInfo
	switch {
	case l >= slog.LevelError:
		pri = journal.PriErr
	case l >= slog.LevelWarn:
		pri = journal.PriWarning
	case l < slog.LevelInfo:
		pri = journal.PriDebug
	}
	return journal.Send(line, pri, map[string]string{"SYSLOG_IDENTIFIER": "s3mount"})
}

// syslogSender writes one syslog message with the level's severity.
func syslogSender(w *syslog.Writer) func(slog.Level, string) error {
	return func(l slog.Level, line string) error {
		switch {
		case l >= slog.LevelError:
			return w.Err(line)
		case l >= slog.LevelWarn:
			return w.Warning(line)
		case l < slog.LevelInfo:
			return w.Debug(line)
		}
		return w.Info(line)
	}
}
