import pytest
from inventory.domain.model import Line, ReservedLine, crosses_low_threshold, same_lines


@pytest.mark.parametrize(
    ("before", "after", "crosses"),
    [(6, 4, True), (5, 4, True), (5, 5, False), (4, 3, False), (10, 6, False), (3, 8, False)],
)
def test_stock_is_low_only_when_a_change_takes_it_below_the_threshold(
    before: int, after: int, crosses: bool
) -> None:
    assert crosses_low_threshold(before, after, threshold=5) is crosses


def test_a_retried_reservation_matches_whatever_the_item_order() -> None:
    held = (ReservedLine("A-1", 1, 100), ReservedLine("B-2", 2, 200))
    assert same_lines(held, [Line("B-2", 2), Line("A-1", 1)])
    assert not same_lines(held, [Line("B-2", 3), Line("A-1", 1)])
