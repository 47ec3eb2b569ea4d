package plan

import "fmt"

// CheckRemoval is the guard every member removal passes, whoever asks for
// it: the controller on a scale-down, or a surplus replica leaving on
// SIGTERM. Removing a learner is always safe. Removing a voter is refused
// when the healthy voters left would be fewer than a quorum of the voters
// left, because the cluster would then stop serving.
//
// It returns "" when the removal is safe, or the reason it is not.
func CheckRemoval(members []Member, id uint64) string {
	target, ok := find(members, id)
	if !ok {
		return fmt.Sprintf("member %x is not in the member list", id)
	}
	if target.IsLearner {
		return ""
	}
	voters := Voters(members)
	if len(voters) == 1 {
		return fmt.Sprintf("member %x is the last voter", id)
	}
	healthyLeft := 0
	for _, v := range voters {
		if v.ID != id && v.Healthy {
			healthyLeft++
		}
	}
	need := Quorum(len(voters) - 1)
	if healthyLeft < need {
		return fmt.Sprintf("removing voter %x leaves %d healthy of %d voters, below quorum %d",
			id, healthyLeft, len(voters)-1, need)
	}
	return ""
}
