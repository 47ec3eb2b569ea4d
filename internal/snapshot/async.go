package snapshot

import "io"

// asyncWriter moves writes to w onto their own goroutine, so that hashing
// or spooling a snapshot runs on the second core while the first
// decompresses or receives. Write copies p; Close waits for every write and
// returns the first error.
type asyncWriter struct {
	w    io.Writer
	ch   chan []byte
	free chan []byte
	done chan error
}

const (
	asyncDepth = 8
	asyncChunk = 1 << 20
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, ch: make(chan []byte, asyncDepth), free: make(chan []byte, asyncDepth+1), done: make(chan error, 1)}
	go func() {
		var err error
		for b := range a.ch {
			if err == nil {
				_, err = a.w.Write(b)
			}
			select {
			case a.free <- b[:0]:
			default:
			}
		}
		a.done <- err
	}()
	return a
}

// Write queues a copy of p.
func (a *asyncWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		var b []byte
		select {
		case b = <-a.free:
		default:
			b = make([]byte, 0, asyncChunk)
		}
		k := min(len(p), cap(b))
		a.ch <- append(b, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// Close waits until every queued write is done.
func (a *asyncWriter) Close() error {
	close(a.ch)
	return <-a.done
}
