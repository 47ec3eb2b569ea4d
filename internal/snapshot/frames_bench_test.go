package snapshot

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func benchData() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	for sb.Len() < 64<<20 {
		fmt.Fprintf(&sb, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%07d","uid":"%016x"},"data":{"k":"%016x%016x"}}`, sb.Len(), r.Uint64(), r.Uint64(), r.Uint64())
	}
	return []byte(sb.String())
}

// BenchmarkCompress compares one zstd stream with compressFrames'
// independent frames on Kubernetes-like data.
func BenchmarkCompress(b *testing.B) {
	data := benchData()
	b.Run("stream", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			zw, _ := zstd.NewWriter(io.Discard, zstd.WithEncoderLevel(zstd.SpeedFastest))
			if _, err := io.Copy(zw, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("frames", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			if _, err := compressFrames(io.Discard, bytes.NewReader(data), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
