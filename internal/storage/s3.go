package storage

import (
	"context"
	"errors"
	"net/url"
)

// parseS3 fills loc from an s3://bucket/prefix/name URL. Placeholder until
// the S3 backend lands.
func parseS3(_ *url.URL, _ *Location) error {
	return errors.New("s3:// is not implemented yet")
}

func openS3(_ context.Context, _ Location) (Backend, error) {
	return nil, errors.New("storage: s3:// is not implemented yet")
}
