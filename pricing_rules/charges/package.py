"""Package: usage is sold in blocks; a started block is a whole block; some blocks free."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Literal

from pydantic import field_validator

from pricing_rules.charges.base import ChargeBase, ChargeDetail, PricedCharge, multiply
from pricing_rules.money import MONEY_CONTEXT


class PackageCharge(ChargeBase):
    model: Literal["package"]
    block_size: Decimal
    block_price: Decimal
    free_blocks: int = 0

    @field_validator("block_size")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("block_price")
    @classmethod
    def _not_negative(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("free_blocks")
    @classmethod
    def _free_not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    def price(self, quantity: Decimal) -> PricedCharge:
        """ceil(quantity / block_size) blocks, less the free blocks, at the block price.

        # 2,350 messages in blocks of 1,000 at 5.00, 1 block free:
        # ceil(2350 / 1000) = 3 blocks; 3 - 1 free = 2 x 5.00 = 10.00
        >>> PackageCharge(id="sms", name="SMS bundle", model="package", metric="sms",
        ...     block_size=Decimal(1000), block_price=Decimal("5.00"), free_blocks=1
        ...     ).price(Decimal(2350)).amount
        Decimal('10.00')
        """
        blocks = MONEY_CONTEXT.divide(quantity, self.block_size).to_integral_value(
            rounding=ROUND_CEILING, context=MONEY_CONTEXT
        )
        free = min(blocks, Decimal(self.free_blocks))
        paid = blocks - free
        details = []
        if free:
            details.append(
                ChargeDetail(
                    label=f"{free} free block(s) of {self.block_size.normalize():f}",
                    quantity=free,
                    unit_price=Decimal(0),
                    amount=Decimal(0),
                )
            )
        amount = multiply(paid, self.block_price)
        details.append(
            ChargeDetail(
                label=f"{paid} block(s) of {self.block_size.normalize():f}",
                quantity=paid,
                unit_price=self.block_price,
                amount=amount,
            )
        )
        return PricedCharge(
            quantity=quantity, amount=amount, unit_price=self.block_price, details=tuple(details)
        )
