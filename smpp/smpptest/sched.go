package smpptest

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler runs delayed functions on one goroutine, in due order (FIFO for equal due times).
type scheduler struct {
	mu    sync.Mutex
	tasks taskHeap // guarded by mu
	seq   uint64   // guarded by mu

	wake, quit, done chan struct{}
}

type task struct {
	at  time.Time
	seq uint64
	f   func()
}

type taskHeap []task

func (h taskHeap) Len() int { return len(h) }
func (h taskHeap) Less(i, j int) bool {
	return h[i].at.Before(h[j].at) || h[i].at.Equal(h[j].at) && h[i].seq < h[j].seq
}
func (h taskHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *taskHeap) Push(x any)   { *h = append(*h, x.(task)) }
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = task{}
	*h = old[:len(old)-1]
	return t
}

func (s *scheduler) start() {
	s.wake, s.quit, s.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.run()
}

// stop ends the goroutine; tasks not yet due are discarded.
func (s *scheduler) stop() {
	close(s.quit)
	<-s.done
}

// after runs f on the scheduler goroutine once d has passed; f must not block.
func (s *scheduler) after(d time.Duration, f func()) {
	s.mu.Lock()
	s.seq++
	heap.Push(&s.tasks, task{at: time.Now().Add(d), seq: s.seq, f: f})
	first := s.tasks[0].seq == s.seq
	s.mu.Unlock()
	if first { // the earliest task changed: re-arm the timer
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *scheduler) run() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := time.Hour
		s.mu.Lock()
		for len(s.tasks) > 0 {
			if wait = time.Until(s.tasks[0].at); wait > 0 {
				break
			}
			tk := heap.Pop(&s.tasks).(task)
			s.mu.Unlock()
			tk.f()
			s.mu.Lock()
			wait = time.Hour
		}
		s.mu.Unlock()
		t.Reset(wait)
		select {
		case <-t.C:
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}
