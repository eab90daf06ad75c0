// What several pages read: the catalog, styles, prices, pins and the balance, loaded
// once after sign-in and refreshed when something changes them.

export class Store {
  constructor(api) {
    this.api = api;
    this.models = [];
    this.styles = [];
    this.prices = {};
    this.pins = [];
    this.credits = { balance: 0, held: 0 };
    this.listeners = new Set();
  }

  async load() {
    const [models, styles, prices, pins, credits] = await Promise.all([
      this.api.models(),
      this.api.styles(),
      this.api.prices(),
      this.api.pins(),
      this.api.credits({ limit: 1 }),
    ]);
    this.models = models.data;
    this.styles = styles.data;
    this.prices = prices.operations;
    this.pins = pins.data;
    this.credits = { balance: credits.balance, held: credits.held };
    this.emit();
  }

  model(id) {
    return this.models.find((m) => m.id === id);
  }

  async refreshCredits() {
    const credits = await this.api.credits({ limit: 1 });
    this.credits = { balance: credits.balance, held: credits.held };
    this.emit();
  }

  async refreshPins() {
    this.pins = (await this.api.pins()).data;
    this.emit();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit() {
    for (const listener of this.listeners) listener(this);
  }
}
