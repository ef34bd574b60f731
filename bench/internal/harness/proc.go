// Package harness runs the benchmarks' programs: builds them, starts and stops them as
// processes, reads their CPU time and memory from /proc, and counts what the stream stored.
package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU is a process's user+sys CPU time (clock ticks of 10 ms).
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// RSS is a process's resident set now; PeakRSS its high-water mark (VmHWM).
func RSS(pid int) int64 { return status(pid, "VmRSS:") }

// PeakRSS is a process's highest resident set since it started.
func PeakRSS(pid int) int64 { return status(pid, "VmHWM:") }

func status(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// CPUModel names the machine's processor.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
