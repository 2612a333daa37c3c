from services.scenario_generator.app import service

service.main()
