package topology_test

import (
	"testing"

	"github.com/vetcd/vetcd/internal/plan"
	"github.com/vetcd/vetcd/internal/topology"
)

// plan keeps its own copy of the constant so that it links the standard
// library only; the two must agree.
func TestNoOrdinalAgreesWithPlan(t *testing.T) {
	if plan.NoOrdinal != topology.NoOrdinal {
		t.Fatalf("plan.NoOrdinal = %d, topology.NoOrdinal = %d", plan.NoOrdinal, topology.NoOrdinal)
	}
}
