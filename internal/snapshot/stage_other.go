//go:build !linux

package snapshot

import "os"

// memFile stages on disk where there is no memfd.
func memFile(int64) (*os.File, string, bool) { return nil, "", false }
