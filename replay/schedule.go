package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrAllRefused means every profile of a continuous replay was refused (401/403): a pass has
// nothing left to read until the keys are fixed and the replay restarted.
var ErrAllRefused = errors.New("ayrshare refused every profile's key")

// Schedule says when the passes of a continuous replay run and what each covers.
type Schedule struct {
	Every time.Duration // between the starts of two passes; a pass that takes longer is followed at once
	// Window returns the window of the pass that starts at start; nil keeps the Job's.
	Window func(start time.Time) (since, until time.Time)
}

// RunEvery replays job as passes: one at once, then one every s.Every until ctx ends, each
// over the window of its start. A pass that fails is counted and reported and the next one runs
// on schedule; a profile Ayrshare refuses (401/403) is left out of later passes and counted
// as stopped. report, when not nil, gets each pass's summary and error. RunEvery returns nil
// once ctx ends and the pass in flight stopped (Run's grace applies), or an invalid job or
// schedule's error at once.
func (r *Replayer) RunEvery(ctx context.Context, job Job, s Schedule, report func(Summary, error)) error {
	if s.Every <= 0 {
		return fmt.Errorf("%w: interval %s must be positive", ErrInvalidJob, s.Every)
	}
	window := s.Window
	if window == nil {
		window = func(time.Time) (time.Time, time.Time) { return job.Since, job.Until }
	}
	since, until := window(time.Now())
	if err := r.check(withWindow(job, since, until)); err != nil {
		return err
	}
	if report == nil {
		report = func(Summary, error) {}
	}
	r.mu.Lock()
	r.track = true
	r.mu.Unlock()
	all := len(job.Profiles)
	r.metrics.SetSchedule(all, s.Every)
	r.metrics.setStopped(0)
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		since, until := window(time.Now())
		pass := withWindow(job, since, until)
		if len(pass.Profiles) == 0 {
			sum := Summary{Since: pass.Since, Until: pass.Until, DryRun: pass.DryRun, Actions: map[string]Counts{}, Refused: []string{}}
			err := fmt.Errorf("%w: %d profile(s) stopped", ErrAllRefused, all)
			sum.Errors = []string{err.Error()}
			r.metrics.pass(sum, false, time.Now())
			report(sum, err)
		} else {
			sum, err := r.Run(ctx, pass)
			if len(sum.Refused) > 0 {
				job.Profiles = slices.DeleteFunc(job.Profiles, func(p Profile) bool { return slices.Contains(sum.Refused, p.Label) })
				r.metrics.setStopped(all - len(job.Profiles))
			}
			report(sum, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func withWindow(job Job, since, until time.Time) Job {
	job.Since, job.Until = since, until
	job.Profiles = slices.Clone(job.Profiles)
	return job
}
