package storage

import (
	"context"
	"errors"
	"net/url"
)

// parseOCI fills loc from an oci://registry/repo:tag URL. Placeholder until
// the OCI backend lands.
func parseOCI(_ *url.URL, _ *Location) error {
	return errors.New("oci:// is not implemented yet")
}

func openOCI(_ context.Context, _ Location) (Backend, error) {
	return nil, errors.New("storage: oci:// is not implemented yet")
}
