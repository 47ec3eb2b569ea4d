package snapshot

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// memFile returns an anonymous memory file (memfd) for a db of size bytes
// and the path other code opens it by, when the db fits in the memory
// headroom of this machine and of this process's cgroup.
func memFile(size int64) (*os.File, string, bool) {
	if !fitsInMemory(size, memoryHeadroom()) {
		return nil, "", false
	}
	fd, err := unix.MemfdCreate("vetcd-snapshot-db", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, "", false
	}
	f := os.NewFile(uintptr(fd), "vetcd-snapshot-db (memory)")
	p := fmt.Sprintf("/proc/self/fd/%d", fd)
	if _, err := os.Stat(p); err != nil { // no /proc: stage on disk
		f.Close()
		return nil, "", false
	}
	return f, p, true
}

// memoryHeadroom is the memory this process can still take, in bytes: the
// machine's MemAvailable, lowered by the limit of its cgroup (v2) or of any
// ancestor, or of its v1 memory cgroup. -1 when unknown.
func memoryHeadroom() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	headroom := memAvailable(string(b))
	if headroom < 0 {
		return -1
	}
	lower := func(limit, usage string) {
		if h, ok := cgroupHeadroom(limit, usage); ok && h < headroom {
			headroom = h
		}
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if cg, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		if p, ok := cgroupV2Path(string(cg)); ok {
			for dir := p; ; dir = path.Dir(dir) {
				base := path.Join("/sys/fs/cgroup", dir)
				lower(read(path.Join(base, "memory.max")), read(path.Join(base, "memory.current")))
				if dir == "/" {
					break
				}
			}
		}
	}
	lower(read("/sys/fs/cgroup/memory/memory.limit_in_bytes"), read("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
	return headroom
}

// memAvailable reads MemAvailable from /proc/meminfo's text, in bytes; -1
// when absent.
func memAvailable(meminfo string) int64 {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// cgroupV2Path is this process's cgroup v2 path, from /proc/self/cgroup's
// text (the "0::/path" line).
func cgroupV2Path(procCgroup string) (string, bool) {
	for _, line := range strings.Split(procCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") {
			return path.Clean(p), true
		}
	}
	return "", false
}

// cgroupHeadroom is limit minus usage, from the text of a cgroup's limit
// and usage files; false when there is no limit ("max", a v1 limit near
// the top of int64, or unreadable files).
func cgroupHeadroom(limit, usage string) (int64, bool) {
	l, err := strconv.ParseInt(strings.TrimSpace(limit), 10, 64)
	if err != nil || l >= 1<<62 {
		return 0, false
	}
	u, err := strconv.ParseInt(strings.TrimSpace(usage), 10, 64)
	if err != nil {
		return 0, false
	}
	return max(l-u, 0), true
}
