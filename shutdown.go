package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mount/s3mount/fs"
	"github.com/s3mount/s3mount/metrics"
)

// Clean shutdown. The first SIGTERM or SIGINT tells systemd STOPPING=1 and
// detaches the mount lazily (fusermount3 -u -z): the mountpoint is gone at
// once, so no new file is opened through it, while the files already open
// keep being served. Each upload commits when its file is closed (flush and
// release), and once the last file is closed the kernel ends the FUSE
// session, server.Wait returns, and the daemon exits 0 after the S3
// writes still under way have ended. While it waits it logs, every
// waitLogEvery, how many files are open and uploads unfinished. An umount
// of an idle mount ends the session the same way.
//
// A second signal forces the exit: the multipart uploads not yet completed
// are aborted (so that they leave no parts behind), the log says what was
// abandoned, and the command exits 1; the kernel then fails the open files
// with ENOTCONN.

// waitLogEvery is how often a stopping daemon logs what it waits for.
var waitLogEvery = 5 * time.Second

// writesGrace bounds the wait, after the FUSE session ended, for S3 writes
// still under way.
var writesGrace = 2 * time.Minute

// errForced is the error of a shutdown forced by a second signal.
var errForced = errors.New("forced to exit by a second signal: uploads in progress were abandoned (see the log)")

// waitShutdown serves until the FUSE session of mountpoint ends, handling
// SIGTERM and SIGINT as described above. It returns nil after a clean
// shutdown, errForced after a forced one.
func waitShutdown(server *fuse.Server, mountpoint string, ops *fs.Ops, m *metrics.Metrics, log *slog.Logger) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ended := make(chan struct{})
	go func() {
		server.Wait()
		close(ended)
	}()
	waiting := func(msg string) {
		log.Info(msg, "open_files", ops.OpenFiles(), "open_dirs", ops.OpenDirs(),
			"multipart_uploads_open", len(m.OpenUploads()), "s3_writes_in_flight", m.WritesInFlight())
	}
	var tick <-chan time.Time
	stopping := false
	for {
		select {
		case <-ended:
			if err := waitWrites(m, sigs, log); err != nil {
				return err
			}
			log.Info("unmounted", "mountpoint", mountpoint)
			return nil
		case s := <-sigs:
			if stopping {
				return forceExit(s, ops, m, log)
			}
			stopping = true
			_, _ = sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
			log.Info("stopping: detaching the mount; open files are served until they close, their uploads commit as they do (a second signal forces the exit)",
				"signal", s.String(), "mountpoint", mountpoint)
			if err := fs.Unmount(mountpoint, true); err != nil {
				log.Error("detaching the mount failed", "mountpoint", mountpoint, "err", err)
			}
			t := time.NewTicker(waitLogEvery)
			defer t.Stop()
			tick = t.C
		case <-tick:
			waiting("waiting for open files to close before exiting")
		}
	}
}

// waitWrites waits, after the FUSE session ended, for the S3 writes still
// under way (a commit started by the last release), at most writesGrace;
// a signal forces the exit.
func waitWrites(m *metrics.Metrics, sigs <-chan os.Signal, log *slog.Logger) error {
	if m.WritesInFlight() == 0 {
		return nil
	}
	log.Info("the mount is gone; waiting for S3 writes under way", "s3_writes_in_flight", m.WritesInFlight())
	deadline := time.After(writesGrace)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for m.WritesInFlight() > 0 {
		select {
		case s := <-sigs:
			return forceExit(s, nil, m, log)
		case <-deadline:
			log.Error("S3 writes still under way after the grace period: exiting anyway",
				"s3_writes_in_flight", m.WritesInFlight(), "grace", writesGrace)
			return errForced
		case <-t.C:
		}
	}
	return nil
}

// forceExit logs what a forced exit abandons and aborts the multipart
// uploads left open (best effort, 10 s in all).
func forceExit(s os.Signal, ops *fs.Ops, m *metrics.Metrics, log *slog.Logger) error {
	uploads := m.OpenUploads()
	attrs := []any{"signal", s.String(), "multipart_uploads_open", len(uploads), "s3_writes_in_flight", m.WritesInFlight()}
	if ops != nil {
		attrs = append(attrs, "open_files", ops.OpenFiles())
	}
	log.Error("second signal: exiting now; uploads in progress are abandoned and open files fail with ENOTCONN", attrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range uploads {
		err := u.Client.AbortMultipart(ctx, u.Key, u.UploadID)
		log.Warn("abandoned upload", "bucket", u.Client.Bucket(), "key", u.Key, "aborted", err == nil)
	}
	return errForced
}
