package fs

import (
	"log/slog"
	"strings"
	"sync"
	"syscall"
)

// maxNameLen is the longest file name Linux accepts (NAME_MAX, limits.h).
const maxNameLen = 255

// validName reports whether a key segment can be a file name: not empty,
// not "." or "..", at most NAME_MAX bytes, no NUL (path_resolution(7)).
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen &&
		!strings.ContainsRune(name, 0) && !strings.ContainsRune(name, '/')
}

// nameErrno is 0 for a valid name, ENAMETOOLONG for one over NAME_MAX
// bytes, and otherwise the given errno.
func nameErrno(name string, otherwise syscall.Errno) syscall.Errno {
	switch {
	case validName(name):
		return 0
	case len(name) > maxNameLen:
		return syscall.ENAMETOOLONG
	}
	return otherwise
}

// join makes the key path of name under dir ("" is the root of the bucket).
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// dirPrefix is the key prefix of the entries of directory path dir.
func dirPrefix(dir string) string {
	if dir == "" {
		return ""
	}
	return dir + "/"
}

// parentOf returns the directory path holding path.
func parentOf(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return ""
	}
	return path[:i]
}

// hiddenKeys logs each key that cannot be shown as a file name once.
type hiddenKeys struct {
	log  *slog.Logger
	seen sync.Map
}

func (h *hiddenKeys) report(key, why string) {
	if _, dup := h.seen.LoadOrStore(key, struct{}{}); dup {
		return
	}
	h.log.Warn("key hidden: it cannot be a file name", "key", key, "reason", why)
}

// whyInvalid explains validName's refusal.
func whyInvalid(name string) string {
	switch {
	case name == "":
		return "empty path segment (\"//\")"
	case name == "." || name == "..":
		return "segment is \".\" or \"..\""
	case len(name) > maxNameLen:
		return "segment longer than 255 bytes"
	default:
		return "segment holds a NUL byte"
	}
}
