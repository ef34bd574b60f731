// Package harness runs the benchmarks' programs: builds them, starts and stops them as
// processes (through internal/proc, which the tests share), reads their CPU time and memory
// from /proc, and counts what the stream stored.
package harness

import (
	"os"
	"strings"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/proc"
)

// CPU is a process's user+sys CPU time, 0 when /proc cannot tell.
func CPU(pid int) time.Duration {
	d, _ := proc.CPU(pid)
	return d
}

// RSS is a process's resident set now, 0 when /proc cannot tell.
func RSS(pid int) int64 {
	n, _ := proc.RSS(pid)
	return n
}

// PeakRSS is a process's highest resident set since it started, 0 when /proc cannot tell.
func PeakRSS(pid int) int64 {
	n, _ := proc.PeakRSS(pid)
	return n
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
