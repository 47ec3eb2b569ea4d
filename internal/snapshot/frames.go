package snapshot

import (
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// frameSize is how much plain data goes into one zstd frame.
const frameSize = 8 << 20

// compressFrames writes src to dst as a sequence of independent zstd
// frames of frameSize plain bytes each, compressed on every core and
// written in order. If plain is not nil, it gets every byte read from src,
// in order, from the goroutine that writes dst: the manifest's checksum is
// taken there from the frame buffers themselves, with no copy. A zstd stream may hold any number of frames, so any
// zstd decoder (the zstd CLI, etcd users' tools) reads the result as one
// stream. One frame at a time would leave create bound to one core, well
// below the speed etcd sends a snapshot at. Memory stays bounded: at most
// two frames per core are in flight.
//
// The fastest level keeps up best and still shrinks Kubernetes data
// about 3x.
func compressFrames(dst io.Writer, src io.Reader, plain io.Writer) (int64, error) {
	workers := runtime.GOMAXPROCS(0)
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(workers))
	if err != nil {
		return 0, fmt.Errorf("snapshot: compress: %w", err)
	}
	defer zenc.Close()

	// Buffers are reused: a fresh 8 MiB buffer per frame is zeroed by the
	// runtime, a cost the profile of a 1.5 GiB create put near 5 % of the
	// CPU. At most 2*workers frames are in flight, so the pools never grow
	// past that.
	inBufs := make(chan []byte, 2*workers+1)
	outBufs := make(chan []byte, 2*workers+1)
	get := func(pool chan []byte, size int) []byte {
		select {
		case b := <-pool:
			return b[:0]
		default:
			return make([]byte, 0, size)
		}
	}
	put := func(pool chan []byte, b []byte) {
		select {
		case pool <- b:
		default:
		}
	}

	// Frames in input order; the writer drains them in that order and
	// hands their input buffers back once plain has seen them.
	type frame struct {
		in  []byte
		out chan []byte
	}
	futures := make(chan frame, 2*workers)
	werr := make(chan error, 1)
	go func() {
		var err error
		for f := range futures {
			b := <-f.out
			if err == nil {
				_, err = dst.Write(b)
			}
			if plain != nil {
				plain.Write(f.in)
			}
			put(outBufs, b)
			put(inBufs, f.in[:cap(f.in)])
		}
		werr <- err
	}()

	var n int64
	var rerr error
	for {
		buf := get(inBufs, frameSize)[:frameSize]
		k, err := io.ReadFull(src, buf)
		if k > 0 {
			n += int64(k)
			f := frame{in: buf[:k], out: make(chan []byte, 1)}
			futures <- f
			go func() {
				f.out <- zenc.EncodeAll(f.in, get(outBufs, frameSize/2))
			}()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("snapshot: read db: %w", err)
			break
		}
	}
	close(futures)
	if err := <-werr; err != nil && rerr == nil {
		rerr = fmt.Errorf("snapshot: write: %w", err)
	}
	return n, rerr
}
